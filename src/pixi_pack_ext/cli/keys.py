"""Trusted keys from the command line (``--trusted-key``) and a config file (``trusted-keys``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..sshsig import PublicKey


def trusted_keys(paths: Iterable[Path], config: Path | None) -> list[PublicKey]:
    """Every trusted key, the command line's first; the same key given twice counts once."""
    from ..config import load_config
    from ..sshsig import read_public_key

    values: list[str | Path] = list(paths)
    if config is not None:
        values.extend(load_config(config).trusted_keys)
    keys: dict[bytes, PublicKey] = {}
    for value in values:
        key = read_public_key(value)
        keys.setdefault(key.blob, key)
    return list(keys.values())
