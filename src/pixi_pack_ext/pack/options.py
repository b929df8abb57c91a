"""What ``pixi-pack`` was asked to do: filled by the CLI, read by every pack step."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class PackOptions:
    """Everything ``pixi-pack`` was asked to do; the CLI fills it, tests may too."""

    manifest: Path = Path(".")
    environment: str = "default"
    platform: str | None = None
    #: Output path; None: the format's default name; Path("-"): standard output.
    output: Path | None = None
    format: str = "tar"
    use_cache: Path | None = None
    config: Path | None = None
    auth_file: Path | None = None
    inject: list[Path] = field(default_factory=list)
    ignore_pypi_non_wheel: bool = False
    #: Pack an installed prefix instead of a lock (``--prefix``).
    prefix: Path | None = None
    #: The workspace manifest whose ``[activation]`` a ``--prefix`` pack carries (``--manifest``).
    prefix_manifest: Path | None = None
    wheel_dirs: list[Path] = field(default_factory=list)
    format_options: dict[str, object] = field(default_factory=dict)
    downloads: int | None = None
    #: Write a delta pack holding only what this earlier pack, lock or environment lacks (``--since``).
    since: Path | None = None
    #: Every environment and platform of a pack of several (``-e A -e B``, ``-p X -p Y``).
    environments: list[str] = field(default_factory=list)
    platforms: list[str] = field(default_factory=list)
    #: An OpenSSH private key file: the pack's manifest is signed with it (``--sign``).
    sign: Path | None = None

    def is_multi(self) -> bool:
        """Whether this is a pack of several environments or platforms (``pack/multi_env.py``)."""
        return len(set(self.environments)) > 1 or len(set(self.platforms)) > 1
