"""Running executions: claiming them, running their steps, deciding retries and delays, the
circuit-breaker policy the adapters share, and recovery after a crash."""
