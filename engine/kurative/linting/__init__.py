"""Linting: every check a playbook repository gets before anything runs, and the report formats."""
