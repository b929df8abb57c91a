"""Refuse conda packages whose files would land outside the environment, before rattler sees them.

rattler links what a package's ``info/paths.json`` lists and recreates its symlinks as they are: a
hostile package can list ``../../x`` (written outside the prefix) or ``/etc/x`` (rattler aborts the
whole process on it), or ship a symlink to a folder outside the prefix that another package's file
is then written through. So every path, every archive member and every symlink of all packages is
resolved on paper, following the symlinks of all packages together, and must stay in the prefix.
Hashes say the bytes are the ones that were packed; this says those bytes are safe to install.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

from rattler.package import PathsJson
from rattler.package_streaming import PackageArchive

from ..errors import UnsafeArchiveError
from ..untrusted import (
    alias_key,
    env_vars,
    is_windows,
    link_json_entry_points,
    path_problem,
    read_limited,
    reraise_interrupts,
    shown,
    split_path,
    unique_names,
)

#: More symlink hops than this while resolving one path is a loop (Linux's own limit).
MAX_LINK_HOPS = 40


def unsafe_reason(path: str, *, windows: bool = False) -> str | None:
    """Why ``path`` (relative to the prefix) cannot be installed, or None when it is fine."""
    return path_problem(path, windows=windows)


def _parts(path: str) -> list[str]:
    """Components of a package path; ``\\`` separates too (it does on Windows hosts)."""
    return split_path(path)


#: Where a package's environment variables live (``conda env config vars``), read by activation.
ENV_VARS_DIR: tuple[str, ...] = ("etc", "conda", "env_vars.d")


def _is_env_vars_file(name: str) -> bool:
    parts = [alias_key(p) for p in split_path(name)]
    return len(parts) == 4 and tuple(parts[:3]) == ENV_VARS_DIR and parts[3].endswith(".json")


@dataclass
class PackageContents:
    """What one package would put into the prefix: paths, and symlinks with their targets."""

    name: str
    paths: list[str] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    symlinks: dict[str, str] = field(default_factory=dict)
    hardlinks: dict[str, str] = field(default_factory=dict)
    #: Where ``paths`` came from: paths.json, or info/files in packages made before it existed.
    paths_source: str = "info/paths.json"
    #: ``info/link.json`` (noarch python entry points become files in the prefix), as read.
    link_json: bytes | None = None
    #: ``etc/conda/env_vars.d/*.json`` files (variables activation sets), by member name, as read.
    env_vars: dict[str, bytes] = field(default_factory=dict)
    #: Listed paths the archive lacks (known when it was read from its extracted folder).
    missing: list[str] = field(default_factory=list)


async def read_contents(path: Path) -> PackageContents:
    """``paths.json`` (or the older ``info/files``) and the archive's member list (names and link
    targets; no other file data is read), in one pass over each section."""
    contents = PackageContents(path.name)
    archive = await PackageArchive.from_path(path)
    metadata: dict[str, bytes] = {}
    for section in ("info", "pkg"):
        async for entry in archive.stream(section):
            contents.members.append(entry.name)
            target = entry.link_target
            if entry.is_symlink and target is not None:
                contents.symlinks[entry.name] = target
            elif entry.is_hardlink and target is not None:
                contents.hardlinks[entry.name] = target
            elif entry.name in ("info/paths.json", "info/files", "info/link.json") and entry.is_file:
                metadata[entry.name] = await entry.read()
            elif entry.is_file and _is_env_vars_file(entry.name):
                contents.env_vars[entry.name] = await entry.read()
    _set_listed_paths(contents, metadata.get("info/paths.json"), metadata.get("info/files"))
    contents.link_json = metadata.get("info/link.json")
    return contents


def _set_listed_paths(contents: PackageContents, paths_json: bytes | None, files: bytes | None) -> None:
    """The paths rattler links: paths.json's, or in old packages without one, info/files'."""
    if paths_json is not None:
        try:
            parsed = PathsJson.from_str(paths_json.decode("utf-8"))
            contents.paths = [str(p.relative_path) for p in parsed.paths]
        except BaseException as exc:  # unreadable: rattler refuses the package itself; members are checked
            reraise_interrupts(exc)
            contents.paths = []
    elif files is not None:
        text = files.decode("utf-8", "surrogateescape")
        contents.paths = [line for line in text.splitlines() if line.strip()]
        contents.paths_source = "info/files"


async def list_members(path: Path) -> list[str]:
    """The names of the files and links in both sections of the archive at ``path``. rattler
    refuses a name that is absolute or climbs with ``..``: the package is refused with it.

    Cheaper than ``read_contents`` (one call per section instead of one per member); link targets
    and paths.json are then read from the extracted folder (``read_extracted_contents``)."""
    if path.name.endswith(".tar.bz2"):
        return await asyncio.to_thread(_list_tar_bz2, path)
    try:
        archive = await PackageArchive.from_path(path)
        info, pkg = await asyncio.gather(archive.list_files("info"), archive.list_files("pkg"))
    except BaseException as exc:  # rattler's read errors (or a panic): a hostile name or a broken archive
        reraise_interrupts(exc)
        raise _unreadable(path.name, exc) from None
    return info + pkg


def _list_tar_bz2(path: Path) -> list[str]:
    """``list_members`` of a ``.tar.bz2`` in one pass: both of its sections are one bzip2 stream,
    which rattler's listing decompresses once per section (bzip2 is slow: ~25 MB/s here). The
    pass is the expansion check's (linear, bounded by what the package declares)."""
    from .package_bounds import bound_package

    members = bound_package(path, path.name).members
    assert members is not None  # a .tar.bz2's check lists them
    refuse_unsafe_members(path.name, members)
    return members


def refuse_unsafe_members(package: str, members: list[str]) -> None:
    """Refuse a package whose archive lists a member named absolute or climbing with ``..``."""
    for member in members:
        reason = unsafe_reason(member)
        if reason is not None:
            raise UnsafeArchiveError(
                f"refusing package {package}: its archive member '{member}' has {reason}"
            )


def read_extracted_contents(folder: Path, name: str, listed: list[str] | None = None) -> PackageContents:
    """The same, from a folder rattler's extractor wrote the package into. The extractor keeps
    every entry inside the folder and drops (does not report) members named absolute or with
    ``..`` and hard links leaving it; walking the folder without following links gives the other
    members and the symlinks, and hard links became plain files there.

    ``listed`` are the archive's member names (``list_members``): one the extractor left out is
    refused. Without them (a package that was never a file of its own) it is only left out."""
    contents = PackageContents(name)
    info = folder / "info"
    paths_json, files = (info / "paths.json", info / "files")
    _set_listed_paths(
        contents,
        paths_json.read_bytes() if paths_json.is_file() else None,
        files.read_bytes() if files.is_file() else None,
    )
    link_json = info / "link.json"
    if link_json.is_file() and not link_json.is_symlink():
        contents.link_json = read_small(link_json)
    pending = [("", str(folder))]
    folders: set[str] = set()
    while pending:
        prefix, directory = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                member = prefix + entry.name
                if entry.is_symlink():
                    contents.members.append(member)
                    contents.symlinks[member] = os.readlink(entry.path)
                elif entry.is_dir():
                    folders.add(member)
                    pending.append((member + "/", entry.path))
                else:
                    contents.members.append(member)
                    if _is_env_vars_file(member):
                        contents.env_vars[member] = read_small(Path(entry.path))
    contents.missing = _missing_paths(contents, folder, folders)
    if listed is not None:
        extracted = {"/".join(_parts(m)) for m in contents.members}
        for member in listed:
            if "/".join(_parts(member)) not in extracted:
                raise UnsafeArchiveError(
                    f"refusing package {name}: its archive member '{member}' was not extracted "
                    "(a link leaving the package, or an entry that is not a file)"
                )
    return contents


def read_small(path: Path) -> bytes:
    """A package metadata file, read only when it is a regular file small enough to be a real one."""
    return read_limited(path, path.name)


def _missing_paths(contents: PackageContents, folder: Path, folders: set[str]) -> list[str]:
    """The paths paths.json lists that the archive lacks: rattler would fail halfway through
    linking the environment on one (a symlinked folder of the package is followed, inside it)."""
    present = {"/".join(_parts(m)) for m in contents.members} | folders
    return [
        path
        for path in contents.paths
        if "/".join(_parts(path)) not in present
        and unsafe_reason(path) is None
        and not os.path.lexists(folder / "/".join(_parts(path)))
    ]


async def scan_package(path: Path) -> PackageContents:
    """``read_contents``, with a broken archive refused in one line."""
    try:
        return await read_contents(path)
    except UnsafeArchiveError:
        raise
    except BaseException as exc:  # rattler's read errors (or a panic): the archive itself is broken
        reraise_interrupts(exc)
        raise _unreadable(path.name, exc) from None


def _unreadable(name: str, exc: BaseException) -> UnsafeArchiveError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UnsafeArchiveError(f"refusing package {name}: it is not a readable package archive ({first})")


class _Tree:
    """The symlinks of every package together, to resolve paths the way the file system would.

    Names are compared as a case-insensitive, normalizing file system (macOS, Windows) would
    compare them (``alias_key``): there ``a/X`` goes through a link named ``a/x``. On a
    case-sensitive file system that only makes the guard stricter."""

    def __init__(self, packages: list[PackageContents], present: dict[str, str] | None = None) -> None:
        declared = [(_keys(name), alias_key(target)) for name, target in (present or {}).items()]
        declared += [
            (_keys(name), alias_key(target)) for p in packages for name, target in p.symlinks.items()
        ]
        self.links: dict[tuple[str, ...], str] = dict(declared)
        # A link declared below another link ("a/c" with "a -> b") physically sits at "b/c": key
        # each link by where it really lands, resolving its folder through the links found so far.
        for _ in range(MAX_LINK_HOPS):
            physical: dict[tuple[str, ...], str] = {}
            for parts, target in declared:
                folder = self.resolve(list(parts[:-1])) if parts else None
                physical[(*folder, parts[-1]) if folder is not None else parts] = target
            if physical == self.links:
                break
            self.links = physical

    def resolve(self, parts: list[str]) -> tuple[str, ...] | None:
        """The path inside the prefix that ``parts`` (alias keys: ``_keys``) ends at, or None when
        it leaves the prefix."""
        resolved: list[str] = []
        pending = list(reversed(parts))
        hops = 0
        while pending:
            name = pending.pop()
            if name in ("", "."):
                continue
            if name == "..":
                if not resolved:
                    return None
                resolved.pop()
                continue
            resolved.append(name)
            target = self.links.get(tuple(resolved)) if self.links else None
            if target is None:
                continue
            hops += 1
            if hops > MAX_LINK_HOPS or target.startswith(("/", "\\")) or target[1:2] == ":":
                return None
            resolved.pop()
            pending.extend(reversed(target.replace("\\", "/").split("/")))
        return tuple(resolved)


def _keys(name: str) -> tuple[str, ...]:
    """A path's components as alias keys (``alias_key`` of the whole path: one call per path)."""
    return tuple(_parts(alias_key(name)))


def _climbs_out(parts: list[str]) -> bool:
    """Whether ``parts``, read without following any link, climb above the prefix."""
    depth = 0
    for name in parts:
        if name == "..":
            depth -= 1
            if depth < 0:
                return True
        elif name not in ("", "."):
            depth += 1
    return False


#: The prefix's own bookkeeping, which rattler writes: no package may put files there.
RESERVED_TOP = ("conda-meta",)


def check_contents(
    packages: list[PackageContents], platform: str = "", present: dict[str, str] | None = None
) -> None:
    """Raise ``UnsafeArchiveError`` for the first path or link of any package that escapes, writes
    into the prefix's ``conda-meta``, names an unsafe entry point or sets an unusable variable.

    ``platform`` is the environment's: a Windows one also refuses names Windows reads otherwise.
    ``present``: the symlinks already in the prefix (path -> target) when packages are added to an
    installed environment; a path written through one of them must stay in the prefix too."""
    windows = is_windows(platform)
    for package in packages:
        for kind, names in ((package.paths_source, package.paths), ("the archive", package.members)):
            for name in names:
                reason = unsafe_reason(name, windows=windows)
                if reason is not None:
                    raise UnsafeArchiveError(
                        f"refusing package {package.name}: {kind} lists {shown(name)}, {reason}"
                    )
        for name in package.paths:
            if "conda-meta" in alias_key(name) and _keys(name)[0] in RESERVED_TOP:
                raise UnsafeArchiveError(
                    f"refusing package {package.name}: {package.paths_source} lists {shown(name)}, "
                    "inside the environment's conda-meta (rattler's records of what is installed)"
                )
        for name, target in package.hardlinks.items():
            reason = unsafe_reason(target, windows=windows)
            if reason is not None:
                raise UnsafeArchiveError(
                    f"refusing package {package.name}: hard link {shown(name)} points to "
                    f"{shown(target)}, {reason}"
                )
        _check_package_metadata(package, windows)
    tree = _Tree(packages, present)
    for package in packages:
        for name, target in package.symlinks.items():
            parts = list(_keys(name))
            absolute = unsafe_reason(target) == "an absolute path"
            followed = [*parts[:-1], *alias_key(target).replace("\\", "/").split("/")]
            # Also as written: a declared link can fail to be made (a folder already there), and the
            # links below it then sit in that real folder, not where the link would have taken them.
            if absolute or "\0" in target or _climbs_out(followed) or tree.resolve(followed) is None:
                raise UnsafeArchiveError(
                    f"refusing package {package.name}: symlink {shown(name)} -> {shown(target)} points "
                    "outside the environment (or loops)"
                )
            folder = tree.resolve(parts[:-1])
            where = (*folder, parts[-1]) if folder is not None and parts else ()
            if where and (ENV_VARS_DIR[: len(where)] == where or where[:3] == ENV_VARS_DIR):
                raise UnsafeArchiveError(
                    f"refusing package {package.name}: symlink {shown(name)} -> {shown(target)} would "
                    "make activation read environment variables that were never checked"
                )
        for name in package.paths:
            keys = _keys(name)
            resolved = tree.resolve(list(keys))
            if resolved is None:
                raise UnsafeArchiveError(
                    f"refusing package {package.name}: {shown(name)} would be written through a symlink "
                    "that leaves the environment"
                )
            if resolved[:3] == ENV_VARS_DIR and resolved != keys:
                raise UnsafeArchiveError(
                    f"refusing package {package.name}: {shown(name)} would land in etc/conda/env_vars.d "
                    "through a symlink, where activation reads it unchecked"
                )
            if resolved[:1] and resolved[0] in RESERVED_TOP:
                raise UnsafeArchiveError(
                    f"refusing package {package.name}: {shown(name)} would be written into the "
                    "environment's conda-meta through a symlink"
                )

    for package in packages:
        if package.missing:
            raise UnsafeArchiveError(
                f"refusing package {package.name}: {package.paths_source} lists '{package.missing[0]}', "
                "which its archive lacks (a broken package: rebuild it, or leave it out of the pack)"
            )


def _check_package_metadata(package: PackageContents, windows: bool) -> None:
    """Entry points (files rattler makes in ``bin/``) and environment variables (set by activation)."""
    what = f"package {package.name}"
    if package.link_json is not None:
        link_json_entry_points(package.link_json, what, windows=windows)
    names: list[str] = []
    for member, data in sorted(package.env_vars.items()):
        names.extend(env_vars(data, f"{what}: {member}"))
    if windows:  # Windows' variable names ignore case
        unique_names(names, what, "variable name")
