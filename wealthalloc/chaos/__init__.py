"""Chaos under load: a mixed workload of many users against a running cluster while its parts are killed
in turn, then a proof from PostgreSQL, Redis and the API that no acknowledged write was lost or doubled.

``make chaos`` (``wealthalloc chaos``) runs it; docs/cluster.md says what each fault does.
"""
