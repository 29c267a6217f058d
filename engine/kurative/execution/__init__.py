"""Running executions: claiming them, running their steps, deciding retries, recovering after a crash."""
