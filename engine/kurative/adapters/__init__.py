"""Adapters to the systems kurative acts on: Kubernetes API servers, HTTP hosts, Prometheus."""
