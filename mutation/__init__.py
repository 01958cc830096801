"""Mutation testing of the critical paths (``make mutate``; see docs/reliability.md)."""
