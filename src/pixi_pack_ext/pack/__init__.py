"""Making a pack: lock (or installed prefix) -> plan -> inject -> fetch and verify -> lay out -> format."""
