"""Matching: JMESPath expressions, templates, and the index that picks the playbooks an alert starts."""
