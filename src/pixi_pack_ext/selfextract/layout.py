"""Self-extracting packs: a shell or PowerShell header followed by the pack's tar and the unpacker.

The payload is stored as raw bytes at offsets the header records (no base64, nothing held in
memory), so a pack of any size is written, verified and unpacked in constant memory:

``environment.sh``:  header (padded to a multiple of 4096) | tar | unpacker
``environment.ps1``: header ending in ``<#`` | tar | CRLF | unpacker | CRLF ``#>`` CRLF

The bundled unpacker is a zipapp, and a zip is read from its end: ending ``environment.sh``, it is
imported in place, nothing copied. Packs from before the split of the sha256 (below) put the
unpacker first; the offsets say where each part is.

PowerShell parses a whole script before running it, so its payload sits inside one block comment
and is escaped just enough that ``#>`` never occurs in it: a ``#`` followed by ``>`` or ``~`` is
stored as ``#~`` (see ``escape``).

Each part has its own sha256 of its stored bytes: the header checks the unpacker before it runs it,
and the unpacker checks the tar (``PayloadReader``) before anything is installed. Packs from before
the split carry one sha256 over both parts, which is still read.

The tar has two: ``ARCHIVE_SHA256`` of all its bytes, which the shell checks when the unpacker is an
executable (``--pixi-unpack-source``), and ``ARCHIVE_SKELETON_SHA256`` of the tar with the bodies of
its conda packages left out (``skeleton_sha256``), which the bundled unpacker checks. Each package is
checked against the sha256 of the pack's ``repodata.json`` as it is extracted, and the skeleton
covers that file, every tar header (so every body's place and size) and every other file: the whole
tar is still checked, but no package byte is hashed twice. Readers from before the skeleton check
the whole tar, which is still written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BLOCK = 4096
CHUNK = 1 << 20
MARKER = b"pixi-pack-ext self-extracting"
#: The end of the PowerShell payload comment (the payload is escaped so that it never holds ``#>``).
PS1_TRAILER = b"\r\n#>\r\n"
PS1_SEPARATOR = b"\r\n"
FIELDS = (
    "HEADER_SIZE",
    "UNPACKER_OFFSET",
    "UNPACKER_SIZE",
    "UNPACKER_CHECK_OFFSET",
    "ARCHIVE_OFFSET",
    "ARCHIVE_SIZE",
    "FILE_SIZE",
)
#: A ``PIXI_PACK_NAME=value`` line of either header, and its ``pixi-pack.json`` comment line.
VALUE_LINE = re.compile(rb"^\$?PIXI_PACK_([A-Z0-9_]+) ?= ?'?([^'\s]*)'?\r?$", re.MULTILINE)
METADATA_LINE = re.compile(rb"^# pixi-pack\.json: (\{.*\})\r?$", re.MULTILINE)


def is_windows(platform: str) -> bool:
    return platform.startswith("win")


@dataclass(frozen=True)
class Layout:
    """Where the parts of a self-extracting pack are, as its header records them."""

    script: str  # "sh" or "ps1"
    header_size: int
    unpacker_offset: int
    unpacker_size: int
    archive_offset: int
    archive_size: int
    file_size: int
    #: Where the bytes ``unpacker_sha256`` covers start. The bundled zipapp begins with its compiled
    #: libraries, which it checks itself against sha256s it carries (in the covered part) while it
    #: copies them out; the header checks the rest before it runs any of it.
    unpacker_check_offset: int
    #: sha256 of the unpacker's stored bytes from ``unpacker_check_offset`` on; None in a pack from
    #: before the split.
    unpacker_sha256: str | None
    #: sha256 of the stored bytes from ``archive_check_offset`` to the end of the tar.
    archive_sha256: str
    unpacker: str  # "python" (the bundled pixi-unpack) or "executable" (--pixi-unpack-source)
    platform: str
    metadata: str | None
    #: ``skeleton_sha256`` of the tar; None in an escaped pack (``.ps1``) and in packs from before it.
    archive_skeleton_sha256: str | None = None

    @property
    def escaped(self) -> bool:
        return self.script == "ps1"

    @property
    def archive_check_offset(self) -> int:
        """Where the bytes ``archive_sha256`` covers start: the tar, or the whole payload for a pack
        from before the split."""
        return self.archive_offset if self.unpacker_sha256 is not None else self.header_size


# -- the PowerShell escape ------------------------------------------------------------------------


def escape(data: bytes) -> bytes:
    """Store ``#`` as ``#~`` where it precedes ``>`` or ``~`` (C-speed replaces, order matters)."""
    return data.replace(b"#~", b"#~~").replace(b"#>", b"#~>")


def unescape(data: bytes) -> bytes:
    return data.replace(b"#~", b"#")
