"""``--prefix``: a plan from an installed environment, its archives found in this machine's package caches."""
