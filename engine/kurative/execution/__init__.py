"""Running executions: the runner, recovery, and the circuit-breaker policy its adapters share."""
