"""Hostile packs, packages and inputs: refused cleanly, nothing written outside, nothing let in."""
