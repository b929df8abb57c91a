"""Faults while packing and unpacking: clear errors, nothing half-written, re-runs reuse the cache."""
