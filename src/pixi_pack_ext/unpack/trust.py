"""The unpack side of the manifest: check a pack's files against it, and its signature, as they arrive.

A tar pack carries its manifest and signature first, so ``TrustGate`` sees them before any other
member: with trusted keys, a pack that has no signature, is signed by another key, or whose
signature does not match its manifest is refused before anything else is written. Then every
member must be listed, with the listed size (checked before it is written) and sha256. A conda
package's sha256 is checked against the pack's ``repodata.json`` as it is extracted (the unpacker
does that anyway); the gate checks that ``repodata.json`` (a file it hashes) records the manifest's
sha256 for it, so no package byte is hashed twice. A pack with no manifest (older packs, pixi-pack's
own) is read as before unless trusted keys are given.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidPackError
from ..manifest import MANIFEST_FILE, MAX_MANIFEST_SIZE, SIGNATURE_FILE, Manifest, parse_manifest, sha256_file
from ..metadata import CHANNEL_DIR, is_package_member
from ..sshsig import MAX_SIGNATURE_TEXT, PublicKey, SignatureError, parse, verify

if TYPE_CHECKING:
    from ..hookspecs import PackFiles


def _unsigned(what: str) -> SignatureError:
    return SignatureError(
        f"the pack is not signed (it has no {what}); refusing it because trusted keys were given "
        "(sign packs with 'pixi-pack --sign KEY')"
    )


class TrustGate:
    """Checks one pack's files, in the order a reader meets them, against its manifest and signature.

    Call ``starting(name, size)`` before a file is written, ``ready(name, path)`` once it is, or
    ``digest(name, sha256)`` when the reader hashed it itself, then ``finish(pack_dir)``.
    """

    def __init__(self, trusted: list[PublicKey] | None = None, manifest_sha256: str | None = None) -> None:
        """``manifest_sha256`` pins the manifest instead of (or besides) keys: a self-extracting
        script's header passes the sha256 of the manifest whose signature ``ssh-keygen`` checked."""
        self.trusted = list(trusted or [])
        self.pinned = manifest_sha256
        self.manifest: Manifest | None = None
        self.manifest_bytes: bytes | None = None
        #: The key the signature carries (checked against ``trusted`` when there are any).
        self.signer: str | None = None
        self.signed_by: PublicKey | None = None
        self._state = "start"  # start -> signature -> files | open (a pack with no manifest)
        self._seen: set[str] = set()
        self._checked: set[str] = set()
        self._folders: set[str] | None = None

    def folder(self, name: str) -> None:
        """A folder member ``name`` is about to be made: in a pack with a manifest it must hold a listed
        file (a folder is not in the manifest, so an unlisted one would be an unchecked change), and
        nothing, not even a folder, may come before the manifest of a pack that must be signed."""
        if not name:
            return  # the pack's root ("./")
        if self._state == "start":
            if self.trusted or self.pinned:
                raise _unsigned(MANIFEST_FILE)
            self._state = "open"
        elif self._state == "signature":
            self._close_signature(None)
        if not self.enforcing:
            return
        assert self.manifest is not None
        if self._folders is None:
            self._folders = {parent for listed in self.manifest.files for parent in _parents(listed)}
        if name not in self._folders:
            raise InvalidPackError(
                f"the pack holds the folder '{name}', which holds no file its {MANIFEST_FILE} lists"
            )

    @property
    def enforcing(self) -> bool:
        return self._state == "files"

    # -- the members, in order -----------------------------------------------------------------------

    def starting(self, name: str, size: int) -> None:
        """``name`` (``size`` bytes) is about to be written: refuse it unless the manifest allows it."""
        if self._state == "start":
            if name == MANIFEST_FILE:
                if size > MAX_MANIFEST_SIZE:
                    raise InvalidPackError(f"{MANIFEST_FILE} declares {size} bytes; refusing the pack")
                return
            if self.trusted or self.pinned:
                raise _unsigned(MANIFEST_FILE)
            self._state = "open"
        elif self._state == "signature":
            if name == SIGNATURE_FILE:
                if size > MAX_SIGNATURE_TEXT:
                    raise SignatureError(f"{SIGNATURE_FILE} declares {size} bytes; refusing the pack")
                return
            self._close_signature(None)
        if self._state == "open":
            # A manifest that does not lead the pack is not one: what came before it was not checked.
            # (Without trusted keys that is no weaker than a pack with no manifest at all.)
            return
        assert self.manifest is not None
        entry = self.manifest.files.get(name)
        if entry is None:
            raise InvalidPackError(f"the pack holds '{name}', which its {MANIFEST_FILE} does not list")
        if name in self._seen:
            raise InvalidPackError(f"the pack holds '{name}' twice")
        if entry.size != size:
            raise InvalidPackError(
                f"'{name}' has {size} bytes where {MANIFEST_FILE} lists {entry.size}: it was changed after "
                "the manifest was made"
            )
        self._seen.add(name)

    def ready(self, name: str, path: Path) -> None:
        """``name`` is complete at ``path``: read the manifest or signature, or check its sha256."""
        if self._state == "start" and name == MANIFEST_FILE:
            self.manifest_data(path.read_bytes())
        elif self._state == "signature" and name == SIGNATURE_FILE:
            self.signature_data(path.read_bytes())
        elif self.enforcing and not is_package_member(name):
            self.digest(name, sha256_file(path))

    def manifest_data(self, data: bytes) -> None:
        if self.pinned is not None and hashlib.sha256(data).hexdigest() != self.pinned:
            raise SignatureError(
                f"the pack's {MANIFEST_FILE} is not the one whose signature was checked; refusing the pack"
            )
        self.manifest = parse_manifest(data)
        self.manifest_bytes = data
        self._state = "signature"

    def signature_data(self, data: bytes) -> None:
        self._close_signature(data)

    def digest(self, name: str, sha256: str) -> None:
        if not self.enforcing:
            return
        assert self.manifest is not None
        entry = self.manifest.files.get(name)
        if entry is None or name not in self._seen:
            self.starting(name, entry.size if entry else -1)
            entry = self.manifest.files[name]
        if sha256 != entry.sha256:
            raise InvalidPackError(
                f"'{name}' does not match {MANIFEST_FILE} (sha256 {sha256}, listed {entry.sha256}): it was "
                "changed after the manifest was made"
            )
        self._checked.add(name)

    def _close_signature(self, data: bytes | None) -> None:
        """The signature member (or its absence, ``None``) is known: check it against the manifest."""
        assert self.manifest_bytes is not None
        self._state = "files"
        if data is None:
            if self.trusted:
                raise _unsigned(SIGNATURE_FILE)
            return
        if self.trusted:
            self.signed_by = verify(
                self.manifest_bytes,
                data,
                self.trusted,
                what=SIGNATURE_FILE,
                signed=f"the pack's {MANIFEST_FILE}",
            )
        self.signer = parse(data, SIGNATURE_FILE).fingerprint

    # -- the end -------------------------------------------------------------------------------------

    def finish(self, pack_dir: Path, taken: Iterable[str] = ()) -> None:
        """Every listed file was met and matched; each package's sha256 is the one ``repodata.json``
        (checked above) records, which the unpacker checks the package against.

        A format that does not report its files (a folder used in place) is checked here whole."""
        if self._state == "start":
            self.check_folder(pack_dir)
            return
        if self._state == "signature":
            self._close_signature(None)
        if not self.enforcing:
            return
        assert self.manifest is not None
        missing = sorted(set(self.manifest.files) - self._seen)
        if missing:
            raise InvalidPackError(f"'{missing[0]}' is listed in {MANIFEST_FILE} but missing from the pack")
        taken_names = set(taken)
        for name in sorted(self._seen - self._checked):
            if not is_package_member(name):
                if name in taken_names or not (pack_dir / name).is_file():
                    raise InvalidPackError(f"'{name}' was not checked against {MANIFEST_FILE}")
                self.digest(name, sha256_file(pack_dir / name))
        self._check_packages(pack_dir)

    def check_folder(self, pack_dir: Path) -> None:
        """Check a pack folder: its manifest and signature first, then every file in it."""
        from ..archive import walk_sorted

        for special in (MANIFEST_FILE, SIGNATURE_FILE):
            path = pack_dir / special
            if path.is_file() and not path.is_symlink():
                self.starting(special, path.stat().st_size)
                self.ready(special, path)
        for path in walk_sorted(pack_dir):
            name = path.relative_to(pack_dir).as_posix()
            if name in (MANIFEST_FILE, SIGNATURE_FILE):
                continue
            if path.is_dir() and not path.is_symlink():
                self.folder(name)
                continue
            if path.is_symlink() or not path.is_file():
                if self.trusted or self.enforcing:
                    raise InvalidPackError(f"the pack's '{name}' is not a regular file")
                continue
            self.starting(name, path.stat().st_size)
            self.ready(name, path)
        self.finish(pack_dir)

    def _check_packages(self, pack_dir: Path) -> None:
        assert self.manifest is not None
        repodata: dict[str, dict[str, object]] = {}
        for name in sorted(self._seen - self._checked):
            subdir, file_name = name.split("/")[1:]
            if subdir not in repodata:
                repodata[subdir] = _repodata_entries(pack_dir / CHANNEL_DIR / subdir / "repodata.json")
            entry = repodata[subdir].get(file_name)
            recorded = entry.get("sha256") if isinstance(entry, dict) else None
            if recorded != self.manifest.files[name].sha256:
                raise InvalidPackError(
                    f"'{name}' has sha256 {recorded} in the pack's repodata.json but "
                    f"{self.manifest.files[name].sha256} in {MANIFEST_FILE}; refusing the pack"
                )
            self._checked.add(name)


def _parents(name: str) -> Iterable[str]:
    """The folders ``a`` and ``a/b`` of the file ``a/b/c``."""
    parts = name.split("/")[:-1]
    return ("/".join(parts[: i + 1]) for i in range(len(parts)))


def _repodata_entries(path: Path) -> dict[str, dict[str, object]]:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(doc, dict):
        return {}
    entries: dict[str, dict[str, object]] = {}
    for key in ("packages", "packages.conda"):
        table = doc.get(key)
        if isinstance(table, dict):
            entries.update(table)
    return entries


class GatedFiles:
    """A ``PackFiles`` that passes each file through a ``TrustGate`` before the unpacker sees it."""

    def __init__(self, gate: TrustGate, inner: PackFiles) -> None:
        self.gate, self.inner = gate, inner
        self.taken: set[str] = set()

    def file_starting(self, name: str, size: int) -> None:
        self.gate.starting(name, size)

    def folder_starting(self, name: str) -> None:
        self.gate.folder(name)

    def file_located(self, name: str, path: Path, source: Path, offset: int, size: int) -> bool:
        if not is_package_member(name):
            return False  # the gate reads every other file once it is written
        if self.inner.file_located(name, path, source, offset, size):
            self.taken.add(name)
            return True
        return False

    def file_ready(self, name: str, path: Path) -> None:
        self.gate.ready(name, path)
        self.inner.file_ready(name, path)
