"""Playbooks: loading YAML with positions, schema validation, and the immutable models."""
