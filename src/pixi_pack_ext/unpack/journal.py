"""Undo a failed (or killed) in-place update of an environment.

Before an update touches the environment, every file and symbolic link in it gets a hard link in a
journal folder next to it (``DIR/.ENV.pixi-unpack-journal``), and the journal lists every path
that existed. That costs one link per file, not a copy of the bytes. rattler, the wheel installer
and the activation step replace files (a new file under the old name) rather than write into
them, so the linked originals stay as they were. Rolling back removes every path that was not
there, and puts each original back under its name.

The journal names its owner process: when a run is killed, the next ``pixi-unpack`` of a delta
into the same environment rolls it back before anything else (``recover``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Any

from ..errors import UnpackError, UsageError
from ..staging_owner import OWNER_FILE, _pid_namespace, _running, owner_line

log = logging.getLogger(__name__)

SNAPSHOT = "snapshot.json"
#: Written last: a journal without it was never complete, and nothing in the environment was touched.
COMPLETE = "COMPLETE"
FILES = "files"
OUTSIDE = "outside"


def journal_folder(prefix: Path) -> Path:
    return prefix.parent / f".{prefix.name}.pixi-unpack-journal"


def _walk(prefix: Path) -> tuple[list[str], dict[str, list[int]]]:
    """(folders, files and links with their [inode, size, mtime_ns]) under ``prefix``, relative."""
    folders: list[str] = []
    files: dict[str, list[int]] = {}
    for root, dirs, names in os.walk(prefix):
        base = Path(root)
        for name in list(dirs):
            path = base / name
            if path.is_symlink():  # os.walk lists links to folders as folders: a link is a file here
                dirs.remove(name)
                names.append(name)
            else:
                folders.append(path.relative_to(prefix).as_posix())
        for name in names:
            path = base / name
            try:
                st = path.lstat()
            except FileNotFoundError:  # gone since it was listed (a failed install's last writes)
                continue
            files[path.relative_to(prefix).as_posix()] = [st.st_ino, st.st_size, st.st_mtime_ns]
    return folders, files


#: How often ``settle`` looks at the environment for rattler's last writes, how long it must stay
#: unchanged (a link thread reading a large file before writing it shows nothing for a while), and
#: how long at most ``settle`` waits: a link thread goes on with its package after the install
#: failed, for as long as linking that package takes (a package of 60,000 files: ~0.5 s here).
SETTLE_PAUSE = 0.05
SETTLE_QUIET = 0.25
SETTLE_LIMIT = 60.0


def _link_or_copy(source: Path, target: Path) -> None:
    if source.is_symlink():
        os.symlink(os.readlink(source), target)
        return
    try:
        os.link(source, target)
    except OSError:  # another file system, or no hard links there
        shutil.copy2(source, target)


class PrefixJournal:
    """The journal of one update of ``prefix``; ``outside`` files (the activation script) are copied."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.folder = journal_folder(prefix)

    def begin(self, outside: list[Path]) -> None:
        """Record the environment as it is; raises ``UnpackError`` when that is not possible."""
        try:
            self.folder.mkdir()
        except FileExistsError:
            raise UsageError(
                f"another pixi-unpack is updating '{self.prefix}' ({self.folder} exists); wait for it"
            ) from None
        try:
            (self.folder / OWNER_FILE).write_text(owner_line())
            folders, files = _walk(self.prefix)
            (self.folder / FILES).mkdir()
            # One flat folder (``files/<index>``): a folder per folder of the environment costs more.
            for index, relative in enumerate(files):
                _link_or_copy(self.prefix / relative, self.folder / FILES / str(index))
            saved = {}
            for index, path in enumerate(outside):
                if path.is_file():
                    copy = self.folder / OUTSIDE / str(index)
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, copy)
                    saved[str(index)] = str(path)
            snapshot = {
                "folders": folders,
                "files": files,
                "outside": saved,
                "all-outside": [str(p) for p in outside],
            }
            (self.folder / SNAPSHOT).write_text(json.dumps(snapshot))
            (self.folder / COMPLETE).write_text("")
        except OSError as exc:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise UnpackError(
                f"cannot keep a copy of '{self.prefix}' before updating it: {exc.strerror or exc}; "
                "nothing was changed"
            ) from None

    def commit(self) -> None:
        """The update is done: drop the journal."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _snapshot(self) -> dict[str, Any]:
        """The journal's snapshot, every path checked: a journal left on disk is data another
        process could have written, so it may only name paths in the environment and its
        activation scripts, never through a symlink."""
        problem = f"the journal '{self.folder}' of an interrupted update cannot be used"
        try:
            st = self.folder.lstat()
            if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
                raise UnpackError(
                    f"{problem}: it is not a folder this user made; remove it and check '{self.prefix}'"
                )
            snapshot = json.loads((self.folder / SNAPSHOT).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            raise UnpackError(
                f"{problem}: its {SNAPSHOT} cannot be read; remove it and check '{self.prefix}'"
            ) from None
        try:
            files, folders = snapshot["files"], snapshot["folders"]
            outside, all_outside = snapshot["outside"], snapshot["all-outside"]
            ok = (
                isinstance(files, dict)
                and all(
                    isinstance(v, list) and len(v) == 3 and all(type(x) is int for x in v)
                    for v in files.values()
                )
                and isinstance(folders, list)
                and all(_relative_ok(p) for p in [*files, *folders])
                and isinstance(all_outside, list)
                and isinstance(outside, dict)
                and all(self._activation_script(p) for p in [*all_outside, *outside.values()])
                and all(isinstance(k, str) and k.isdigit() for k in outside)
                and set(outside.values()) <= set(all_outside)
            )
        except (KeyError, TypeError):
            ok = False
        if not ok:
            raise UnpackError(
                f"{problem}: its {SNAPSHOT} names paths outside '{self.prefix}'; remove it and check the environment"
            )
        return snapshot

    def _activation_script(self, path: object) -> bool:
        """A script next to the environment named for it: ``activate.*``, or ``activate-ENV.*``
        (``--all`` names each environment's script after it)."""
        return (
            isinstance(path, str)
            and Path(path).parent == self.prefix.parent
            and Path(path).name.startswith(("activate.", f"activate-{self.prefix.name}."))
            and "\0" not in path
        )

    def _restorable(self, relative: str) -> bool:
        """Whether putting ``relative`` back stays in the environment (its folders are no links)."""
        root = os.path.realpath(self.prefix)
        return Path(os.path.realpath((self.prefix / relative).parent)).is_relative_to(root)

    def settle(self) -> bool:
        """Wait until the environment stays unchanged for ``SETTLE_QUIET`` seconds (at most
        ``SETTLE_LIMIT``); False when it never did. rattler's link threads go on writing after an
        install failed, and a rollback before they end would leave their last files behind."""
        deadline = time.monotonic() + SETTLE_LIMIT
        last = self._state()
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(SETTLE_PAUSE)
            now = self._state()
            if now != last:
                last, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since >= SETTLE_QUIET:
                return True
        return False

    def _state(self) -> tuple[list[str], dict[str, list[int]]] | None:
        """The environment's folders and files, or None when it is not there (or not readable)."""
        try:
            return _walk(self.prefix) if self.prefix.is_dir() else None
        except OSError:  # a folder replaced by a file while it was walked: still changing
            return None

    def rollback(self) -> None:
        """Put the environment back as ``begin`` found it, then drop the journal."""
        snapshot = self._snapshot()
        before_files: dict[str, list[int]] = snapshot["files"]
        before_folders = set(snapshot["folders"])
        _, now = _walk(self.prefix) if self.prefix.is_dir() else ([], {})
        for relative in now:
            if relative not in before_files:
                (self.prefix / relative).unlink(missing_ok=True)
        # Folders that were not there go before the files come back: one may stand where a file was.
        for root, dirs, _ in os.walk(self.prefix, topdown=False):
            for name in dirs:
                path = Path(root) / name
                if path.relative_to(self.prefix).as_posix() not in before_folders and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
        unrestorable = []
        for index, (relative, (inode, size, mtime)) in enumerate(before_files.items()):
            target = self.prefix / relative
            current = now.get(relative)
            if current == [inode, size, mtime]:
                continue  # untouched (or put back by an earlier, interrupted rollback)
            if current is not None and current[0] == inode:
                unrestorable.append(relative)  # written into in place: the journal's link changed too
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if not self._restorable(relative):
                unrestorable.append(relative)  # a folder on its way became a link out of the prefix
                continue
            os.replace(self.folder / FILES / str(index), target)
        for relative in sorted(before_folders):
            if self._restorable(relative):
                (self.prefix / relative).mkdir(parents=True, exist_ok=True)
        for path in snapshot["all-outside"]:
            Path(path).unlink(missing_ok=True)
        for index, path in snapshot["outside"].items():
            shutil.copy2(self.folder / OUTSIDE / index, path)
        shutil.rmtree(self.folder, ignore_errors=True)
        if unrestorable:
            raise UnpackError(
                f"'{self.prefix}' could not be fully restored: {', '.join(unrestorable[:5])} changed in place"
            )
        differing = _differences(before_folders, before_files, self.prefix)
        if differing:
            raise UnpackError(
                f"'{self.prefix}' could not be fully restored: {', '.join(differing[:5])} changed while it "
                "was restored (something still writes into it); check the environment"
            )


def _differences(folders: set[str], files: dict[str, list[int]], prefix: Path) -> list[str]:
    """The paths where ``prefix`` is not as the snapshot was: a rollback checks its own result, as
    a writer it could not wait out may have gone on. A put-back file is the journal's link (or
    copy) of the original: same size and mtime (the inode of a copy differs); a put-back symlink
    is a new one with the same target (its own mtime)."""
    try:
        now_folders, now_files = _walk(prefix) if prefix.is_dir() else ([], {})
    except OSError:
        return [prefix.name]

    def changed(relative: str) -> bool:
        (_, size, mtime), (_, was_size, was_mtime) = now_files[relative], files[relative]
        return size != was_size or (mtime != was_mtime and not (prefix / relative).is_symlink())

    differing = [p for p in now_files if p not in files or changed(p)]
    differing += [p for p in files if p not in now_files]
    differing += sorted(set(now_folders).symmetric_difference(folders))
    return sorted(set(differing))


def _relative_ok(path: object) -> bool:
    """A path of the snapshot: relative, normalized, no ``..``, no NUL."""
    return (
        isinstance(path, str)
        and bool(path)
        and "\0" not in path
        and not os.path.isabs(path)
        and not Path(path).drive
        and ".." not in path.split("/")
    )


def recover(prefix: Path) -> bool:
    """Roll back the update a killed run left unfinished in ``prefix``; True when there was one."""
    journal = PrefixJournal(prefix)
    if not journal.folder.is_dir() and not journal.folder.is_symlink():
        return False
    try:
        pid, _, namespace = (journal.folder / OWNER_FILE).read_text().strip().partition(" ")
        running = namespace != _pid_namespace() or _running(int(pid))
    except (OSError, ValueError):
        running = False  # the owner file is written first: without one, the run died at once
    if running:
        raise UsageError(f"another pixi-unpack is updating '{prefix}' ({journal.folder} exists); wait for it")
    snapshot_ok = journal._snapshot() if (journal.folder / COMPLETE).is_file() else None
    if snapshot_ok is not None:
        log.warning("an earlier update of %s was interrupted; restoring the environment first", prefix)
        journal.rollback()
    elif journal.folder.is_symlink():
        raise UnpackError(
            f"'{journal.folder}' is a symlink, not the journal of an update; remove it and check '{prefix}'"
        )
    else:
        shutil.rmtree(journal.folder, ignore_errors=True)
    return True
