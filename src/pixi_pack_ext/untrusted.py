"""The one gate for data read from a pack: every string that names a file, a folder, a package or an
environment variable passes through here before anything else touches it.

Everything inside a pack is untrusted (it travelled, anyone could have made it): ``pixi-pack.json``,
each subdir's ``repodata.json``, the wheels' file names, the paths, link targets and entry points
inside packages, and the environment variables packages set. Each reader calls one function of
this module at the edge and gets back either a value that is safe to use as it is (a single path
component, a relative path that stays below its root, a record whose name, version and build make
a plain folder name) or an ``UntrustedDataError``: one line naming the field, the value (escaped
and shortened for printing) and the package. Nothing is repaired or guessed.

The rules are conda's (and rattler's), as strict as they allow while accepting every real package:
names of ``[A-Za-z0-9_.-]`` not starting with a dot or ``__`` (virtual packages are never files),
versions that rattler parses, builds of ``[A-Za-z0-9_.+]``, a subdir rattler knows, and an archive
file named exactly ``{name}-{version}-{build}.conda`` or ``.tar.bz2``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import stat
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NewType

import rattler

from .errors import UnsafeArchiveError

#: A value that is one safe path component (no separator, not ``.``/``..``, no NUL, bounded).
Component = NewType("Component", str)

#: The longest name, version or build accepted (real ones are far shorter; file systems take 255).
MAX_FIELD = 200
#: The longest relative path inside a package, and the longest path component.
MAX_PATH = 4096
MAX_COMPONENT = 255
#: The biggest ``pixi-pack.json``, package metadata file (``link.json``, ``env_vars.d/*.json``) and
#: ``repodata.json`` read; real ones are bytes, kilobytes and a few megabytes.
MAX_SMALL_JSON = 1 << 20
MAX_REPODATA_JSON = 256 << 20
#: The deepest JSON nesting accepted: real documents nest a few levels.
MAX_JSON_DEPTH = 64
#: How much of a value an error line shows.
SHOWN = 160

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+!\-]*")
_BUILD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+]*")
_HEX = re.compile(r"[0-9a-fA-F]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Names the shells an activation script is written for keep for themselves: read-only (an
#: assignment fails and breaks the script), tied arrays (zsh's ``path``), or integers whose
#: assignment evaluates arithmetic: bash runs ``$(...)`` inside ``RANDOM='x[$(cmd)]'`` even from a
#: single-quoted value, and zsh's ``UID``/``USERNAME`` change the shell's user. No quoting makes
#: such an assignment a plain one, so a pack may not set them (found with ``compgen -v`` in bash,
#: ``$parameters`` in zsh and ``set -n`` in fish).
RESERVED_ENV_NAMES = frozenset(
    [
        "BASHOPTS",
        "BASHPID",
        "BASH_ARGC",
        "BASH_ARGV",
        "BASH_ARGV0",
        "BASH_COMMAND",
        "BASH_LINENO",
        "BASH_SOURCE",
        "BASH_SUBSHELL",
        "BASH_VERSINFO",
        "COMP_CWORD",
        "COMP_LINE",
        "COMP_POINT",
        "DIRSTACK",
        "EPOCHREALTIME",
        "EPOCHSECONDS",
        "FUNCNAME",
        "GROUPS",
        "HISTCMD",
        "LINENO",
        "MAILCHECK",
        "OPTIND",
        "PIPESTATUS",
        "PPID",
        "RANDOM",
        "SECONDS",
        "SHELLOPTS",
        "SRANDOM",
        "UID",
        "EUID",
        "GID",
        "EGID",
        "USERNAME",
        "ARGC",
        "COLUMNS",
        "LINES",
        "FUNCNEST",
        "HISTSIZE",
        "SAVEHIST",
        "SHLVL",
        "TRY_BLOCK_ERROR",
        "TRY_BLOCK_INTERRUPT",
        "TTYIDLE",
        "ZSH_EVAL_CONTEXT",
        "ZSH_SUBSHELL",
        "PWD",
        "FISH_VERSION",
        "_",
        "aliases",
        "argv",
        "builtins",
        "cdpath",
        "commands",
        "dirstack",
        "dis_aliases",
        "dis_builtins",
        "dis_functions",
        "dis_functions_source",
        "dis_galiases",
        "dis_patchars",
        "dis_reswords",
        "dis_saliases",
        "fignore",
        "fpath",
        "funcfiletrace",
        "funcsourcetrace",
        "funcstack",
        "functions",
        "functions_source",
        "functrace",
        "galiases",
        "history",
        "historywords",
        "jobdirs",
        "jobstates",
        "jobtexts",
        "keymaps",
        "mailpath",
        "manpath",
        "module_path",
        "modules",
        "nameddirs",
        "options",
        "parameters",
        "patchars",
        "path",
        "pipestatus",
        "psvar",
        "reswords",
        "saliases",
        "status",
        "termcap",
        "terminfo",
        "userdirs",
        "usergroups",
        "watch",
        "widgets",
        "zsh_eval_context",
        "zsh_scheduled_events",
        "fish_kill_signal",
        "fish_killring",
        "fish_pid",
        "hostname",
        "status_generation",
        "umask",
        "version",
    ]
)


def env_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be set by an activation script (None: it can)."""
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name) or len(name) > MAX_FIELD:
        return "is not a name a shell can set ([A-Za-z_][A-Za-z0-9_]*)"
    if name in RESERVED_ENV_NAMES:
        return (
            "is a variable the shells keep for themselves (read-only or evaluated), which a pack may not set"
        )
    return None


#: An entry point's command name (``info/link.json``, a wheel's ``entry_points.txt``).
_COMMAND = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+\-]*")
#: Names Windows gives to devices, whatever the extension (``nul.txt`` opens the NUL device).
_WINDOWS_DEVICES = re.compile(r"(con|prn|aux|nul|conin\$|conout\$|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?", re.I)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

KNOWN_SUBDIRS = frozenset(str(p) for p in rattler.Subdir.all()) | {"noarch"}
PACKAGE_EXTENSIONS = (".conda", ".tar.bz2")
#: The repodata table each archive kind is listed in.
TABLES = {".tar.bz2": "packages", ".conda": "packages.conda"}
MAX_INT = (1 << 63) - 1


class UntrustedDataError(UnsafeArchiveError):
    """A value read from a pack that cannot be used safely; the message names field, value, package."""


def shown(value: object, limit: int = SHOWN) -> str:
    """``value`` quoted for an error line: control characters escaped, long values shortened."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)[: limit * 4]
    escaped = text.encode("unicode_escape").decode("ascii") if _needs_escape(text) else text
    if len(escaped) > limit:
        escaped = f"{escaped[: limit - 20]}...{escaped[-12:]} ({len(text)} characters)"
    return f"'{escaped}'"


def _needs_escape(text: str) -> bool:
    if text.isprintable():  # the quick answer for nearly every value
        return False
    return bool(_CONTROL.search(text)) or any(
        unicodedata.category(c) in ("Cf", "Co", "Cs", "Zl", "Zp", "Cc") for c in text
    )


def printable(text: str) -> str:
    """``text`` with control, format and line-separator characters escaped: an error line may hold
    names from a pack, which must not move the cursor, recolour the terminal or start a new line."""
    if not _needs_escape(text):
        return text
    return "".join(
        c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) in _ESCAPED else c for c in text
    )


_ESCAPED = frozenset({"Cc", "Cf", "Co", "Cs", "Zl", "Zp"})


def refuse(what: str, field: str, value: object, reason: str) -> UntrustedDataError:
    """The one error line: ``refusing <what>: its <field> '<value>' <reason>``."""
    return UntrustedDataError(f"refusing {what}: its {field} {shown(value)} {reason}")


# --------------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------------


def load_json(data: bytes | str, source: str, *, max_bytes: int = MAX_SMALL_JSON) -> Any:
    """Parse a JSON document from a pack: bounded in size and nesting, any failure one line."""
    size = len(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    if size > max_bytes:
        raise UntrustedDataError(
            f"refusing {source}: it has {size} bytes, more than the {max_bytes} a pack's file may have"
        )
    try:
        value = json.loads(data)
    except RecursionError:
        raise UntrustedDataError(f"refusing {source}: its JSON nests too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UntrustedDataError(f"{source} is malformed: it is not valid JSON ({exc})") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise UntrustedDataError(f"refusing {source}: its JSON nests more than {MAX_JSON_DEPTH} levels deep")
    return value


def read_limited(path: Path, source: str, *, max_bytes: int = MAX_SMALL_JSON) -> bytes:
    """The bytes of a pack's file, at most ``max_bytes``: a FIFO, a device or a link to one (a
    folder pack is used in place, so it can hold any of them) is refused instead of read forever.
    ``FileNotFoundError`` passes to the caller."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UntrustedDataError(f"refusing {source}: it is not a regular file")
        if info.st_size > max_bytes:
            raise UntrustedDataError(
                f"refusing {source}: it has {info.st_size} bytes, more than the {max_bytes} a pack's file may have"
            )
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise UntrustedDataError(f"refusing {source}: it grew past {max_bytes} bytes while it was read")
    return data


def _depth(value: Any) -> int:
    """The nesting depth of a parsed JSON value, without recursion (json.loads took up to ~1000)."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        pending.extend((child, depth + 1) for child in item if isinstance(child, dict | list))
    return deepest


# --------------------------------------------------------------------------------------------------
# Path components and relative paths
# --------------------------------------------------------------------------------------------------


def component_problem(value: str, *, windows: bool = False) -> str | None:
    """Why ``value`` cannot be one path component, or None. ``windows``: also refuse what a
    Windows file system would read otherwise (``:``, device names, trailing dots and spaces)."""
    if not value:
        return "is empty"
    if value in (".", ".."):
        return "is a '.' or '..' component"
    if "/" in value or "\\" in value:
        return "contains a path separator"
    if "\0" in value or _CONTROL.search(value):
        return "contains a NUL or control character"
    if len(value.encode("utf-8", "surrogatepass")) > MAX_COMPONENT:
        return f"is longer than {MAX_COMPONENT} bytes"
    if windows:
        if ":" in value:
            return "contains ':' (a drive or a stream on Windows)"
        if _WINDOWS_DEVICES.fullmatch(value):
            return "is a Windows device name"
        if value[-1] in ". ":
            return "ends with a dot or a space (Windows drops them)"
    return None


def path_problem(path: str, *, windows: bool = False) -> str | None:
    """Why ``path`` (relative to its root: a prefix, a package) cannot be used, or None.

    ``\\`` separates too (it does on Windows hosts); ``.`` and empty components are skipped, as a
    file system does."""
    if not path or "\0" in path:
        return "an empty or NUL-containing path"
    if path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        return "an absolute path"
    if len(path) > MAX_PATH:
        return f"a path longer than {MAX_PATH} characters"
    parts = split_path(path)
    if not parts:
        return "a path naming no file (only '.' and separators)"
    if ".." in parts:
        return "a '..' component"
    # Checked on the whole path at once where a component's rule allows: this runs for every file
    # of every package (hundreds of thousands in a big environment)
    if not path.isprintable() and _CONTROL.search(path):  # isprintable: the quick test
        return "a component that contains a NUL or control character"
    if windows or len(path) > MAX_COMPONENT // 4:  # a UTF-8 character takes at most 4 bytes
        for part in parts:
            problem = component_problem(part, windows=windows)
            if problem is not None:
                return f"a component that {problem}"
    return None


def split_path(path: str) -> list[str]:
    """Components of a package path; ``\\`` separates too (it does on Windows hosts)."""
    parts = path.split("/")
    if "\\" in path or "" in parts or "." in parts:  # most paths have none: a plain split then
        return [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    return parts


def alias_key(part: str) -> str:
    """The key two names share when a case-insensitive, normalizing file system (macOS, Windows)
    would open the same file for both. Works on whole paths too (it never changes a separator)."""
    if part.isascii():
        return part.lower()
    return unicodedata.normalize("NFC", part).casefold()


def safe_component(value: object, what: str, field: str, *, windows: bool = False) -> Component:
    """``value`` as one safe path component, or a refusal naming ``what`` and ``field``."""
    if not isinstance(value, str):
        raise refuse(what, field, value, "is not a string")
    problem = component_problem(value, windows=windows)
    if problem is not None:
        raise refuse(what, field, value, problem)
    return Component(value)


def safe_relative_path(value: object, what: str, field: str, *, windows: bool = False) -> str:
    """``value`` as a relative path that stays below its root, in ``/`` form, or a refusal."""
    if not isinstance(value, str):
        raise refuse(what, field, value, "is not a string")
    problem = path_problem(value, windows=windows)
    if problem is not None:
        raise refuse(what, field, value, f"is {problem}")
    return "/".join(split_path(value))


def is_windows(platform: str) -> bool:
    return platform.startswith("win-")


# --------------------------------------------------------------------------------------------------
# Package identity: name, version, build, subdir, file name
# --------------------------------------------------------------------------------------------------


def package_name(value: object, what: str) -> str:
    """A conda package name (``_libgcc_mutex``, ``python-dateutil``, ``r-base``)."""
    text = _bounded_string(value, what, "name")
    if not _NAME.fullmatch(text):
        raise refuse(what, "name", value, "is not a conda package name (letters, digits, '_', '.', '-')")
    if text.startswith("__"):
        raise refuse(what, "name", value, "is a virtual package, which is never a file")
    return text


def package_version(value: object, what: str) -> str:
    text = _bounded_string(value, what, "version")
    if not _VERSION.fullmatch(text):
        raise refuse(what, "version", value, "is not a conda version (letters, digits, '.', '_', '+', '!')")
    try:
        rattler.Version(text)
    except BaseException as exc:  # rattler's parse error, or a panic in its parser
        reraise_interrupts(exc)
        raise refuse(what, "version", value, "is not a version rattler can read") from None
    return text


def package_build(value: object, what: str) -> str:
    text = _bounded_string(value, what, "build")
    if not _BUILD.fullmatch(text):
        raise refuse(what, "build", value, "is not a conda build string (letters, digits, '_', '.', '+')")
    return text


def subdir(value: object, what: str) -> str:
    text = _bounded_string(value, what, "subdir")
    if text not in KNOWN_SUBDIRS:
        raise refuse(what, "subdir", value, "is not a platform rattler knows (nor noarch)")
    return text


def package_identity(name: object, version: object, build: object, file_name: str, what: str) -> None:
    """Name, version and build that make a plain cache folder name, and the archive file named
    exactly after them: what a pack's repodata (and so a lock's entry to be packed) must say."""
    name = package_name(name, what)
    version = package_version(version, what)
    build = package_build(build, what)
    extension = archive_extension(file_name)
    expected = expected_file_name(name, version, build, extension or ".conda")
    if file_name != expected:
        raise refuse(what, "file name", file_name, f"is not '{expected}' (name-version-build)")


def archive_extension(file_name: str) -> str | None:
    return next((e for e in PACKAGE_EXTENSIONS if file_name.endswith(e)), None)


def expected_file_name(name: str, version: str, build: str, extension: str) -> str:
    return f"{name}-{version}-{build}{extension}"


def cache_folder_name(name: str, version: str, build: str) -> Component:
    """``name-version-build``, the folder rattler's package cache keeps a package in, checked to be
    one component (its parts passed the checks above; this makes sure by construction)."""
    folder = f"{name.lower()}-{version}-{build}"
    if component_problem(folder) is not None or folder.startswith("."):
        raise refuse(f"package {name}", "cache folder", folder, "is not a plain folder name")
    return Component(folder)


def _bounded_string(value: object, what: str, field: str) -> str:
    if not isinstance(value, str):
        raise refuse(what, field, value, "is not a string")
    if not value:
        raise refuse(what, field, value, "is empty")
    if len(value) > MAX_FIELD:
        raise refuse(what, field, value, f"is longer than {MAX_FIELD} characters")
    return value


def reraise_interrupts(exc: BaseException) -> None:
    """For ``except BaseException`` around rattler: a panic in its Rust code arrives as pyo3's
    ``PanicException``, a ``BaseException`` that must become one error line; Ctrl-C, exits and
    cancellations must still pass."""
    if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
        raise exc


# --------------------------------------------------------------------------------------------------
# repodata.json records
# --------------------------------------------------------------------------------------------------

_STRING_FIELDS = ("arch", "platform", "license", "license_family")
_STRING_LIST_FIELDS = ("depends", "constrains", "purls", "flags")
_MAX_SPEC = 1000


def repodata_record(file_name: str, table: str, entry: object, folder: str) -> dict[str, Any]:
    """Check one record of ``channel/<folder>/repodata.json`` (listed as ``file_name`` in ``table``)
    and return it with the fields rattler reads, each checked; unknown fields are left out.

    The name, version and build become the package's cache folder and conda-meta file names, so
    they must each be a plain name and the archive must be named exactly after them."""
    where = f"channel/{folder}/repodata.json"
    extension = archive_extension(file_name)
    if extension is None or TABLES[extension] != table:
        raise refuse(where, "file name", file_name, f"is not a .conda or .tar.bz2 listed under '{table}'")
    safe_component(file_name, where, "file name")
    what = f"package '{file_name}' in {where}"  # a plain name now: no escaping needed
    if not isinstance(entry, dict):
        raise refuse(what, "record", entry, "is not a JSON object")
    name = package_name(entry.get("name"), what)
    what = f"package '{name}' ({file_name}) in {where}"
    version = package_version(entry.get("version"), what)
    build = package_build(entry.get("build"), what)
    record_subdir = subdir(entry.get("subdir", folder), what)
    if record_subdir != folder:
        raise refuse(
            what,
            "subdir",
            record_subdir,
            f"differs from its folder '{folder}' (a pack keeps each package in its own subdir's folder)",
        )
    expected = expected_file_name(name, version, build, extension)
    if file_name != expected:
        raise refuse(what, "file name", file_name, f"is not '{expected}' (name-version-build)")
    if "fn" in entry and entry["fn"] != file_name:
        raise refuse(what, "fn", entry["fn"], f"differs from the file name '{file_name}'")
    record: dict[str, Any] = {"name": name, "version": version, "build": build, "subdir": record_subdir}
    record["build_number"] = _integer(entry.get("build_number"), what, "build_number")
    sha256 = entry.get("sha256")
    if sha256 is None:
        raise UntrustedDataError(f"refusing {what}: it has no sha256 (every package of a pack has one)")
    record["sha256"] = _hex(sha256, 64, what, "sha256")
    for field, length in (("md5", 32), ("legacy_bz2_md5", 32)):
        if entry.get(field) is not None:
            record[field] = _hex(entry[field], length, what, field)
    for field in ("size", "legacy_bz2_size", "timestamp"):
        if entry.get(field) is not None:
            record[field] = _integer(entry[field], what, field)
    for field in _STRING_FIELDS:
        if entry.get(field) is not None:
            record[field] = _text(entry[field], what, field)
    for field in _STRING_LIST_FIELDS:
        if entry.get(field) is not None:
            record[field] = _text_list(entry[field], what, field)
    for field in ("features", "track_features"):
        value = entry.get(field)
        if value is not None:
            record[field] = (
                _text(value, what, field) if isinstance(value, str) else _text_list(value, what, field)
            )
    noarch = entry.get("noarch")
    if noarch is not None:
        if noarch not in (True, False, "python", "generic"):
            raise refuse(what, "noarch", noarch, "is not 'python', 'generic' or a boolean")
        record["noarch"] = noarch
    site = entry.get("python_site_packages_path")
    if site is not None:
        record["python_site_packages_path"] = safe_relative_path(
            site, what, "python_site_packages_path", windows=is_windows(folder)
        )
    extra = entry.get("extra_depends")
    if extra is not None:
        if not isinstance(extra, dict):
            raise refuse(what, "extra_depends", extra, "is not an object of lists")
        record["extra_depends"] = {
            _text(k, what, "extra_depends"): _text_list(v, what, f"extra_depends[{k}]")
            for k, v in extra.items()
        }
    for spec in record.get("depends", ()):
        if spec.startswith("__"):  # the virtual package check parses these: they must parse
            _match_spec(spec, what)
    return record


def _integer(value: object, what: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        raise refuse(what, field, value, f"is not a whole number from 0 to {MAX_INT}")
    return value


def _hex(value: object, length: int, what: str, field: str) -> str:
    if not isinstance(value, str) or len(value) != length or not _HEX.fullmatch(value):
        raise refuse(what, field, value, f"is not {length} hexadecimal digits")
    return value.lower()


def _text(value: object, what: str, field: str) -> str:
    if not isinstance(value, str):
        raise refuse(what, field, value, "is not a string")
    if len(value) > _MAX_SPEC or "\0" in value:
        raise refuse(what, field, value, f"is longer than {_MAX_SPEC} characters or holds a NUL")
    return value


def _text_list(value: object, what: str, field: str) -> list[str]:
    if not isinstance(value, list):
        raise refuse(what, field, value, "is not a list of strings")
    return [_text(item, what, field) for item in value]


def _match_spec(spec: str, what: str) -> None:
    if not _readable_spec(spec):
        raise refuse(what, "dependency", spec, "is not a match spec rattler can read")


@functools.lru_cache(maxsize=1024)
def _readable_spec(spec: str) -> bool:
    """Whether rattler parses ``spec`` (cached: thousands of records share ``__glibc >=2.17``)."""
    try:
        rattler.MatchSpec(spec)
    except BaseException as exc:  # rattler's parse error, or a panic in its parser
        reraise_interrupts(exc)
        return False
    return True


def repodata_document(data: object, folder: str) -> dict[str, dict[str, dict[str, Any]]]:
    """``table -> file name -> checked record`` of one parsed ``repodata.json``."""
    where = f"channel/{folder}/repodata.json"
    if not isinstance(data, dict):
        raise UntrustedDataError(f"{where} is malformed: it is not a JSON object")
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    seen: set[str] = set()
    for table in TABLES.values():
        entries = data.get(table) or {}
        if not isinstance(entries, dict):
            raise UntrustedDataError(f"{where} is malformed: '{table}' is not an object")
        checked: dict[str, dict[str, Any]] = {}
        for file_name, entry in entries.items():
            record = repodata_record(file_name, table, entry, folder)
            key = alias_key(file_name)
            if key in seen:
                raise refuse(where, "file name", file_name, "is listed twice (or twice but for case)")
            seen.add(key)
            checked[file_name] = record
        tables[table] = checked
    return tables


def raw_entries(document: object) -> dict[str, dict[str, Any]]:
    """File name -> record as written, of a document ``repodata_document`` accepted: for the fields
    it leaves out that another check reads (the origin ``url`` and ``channel``: text for conda-meta,
    never a path)."""
    assert isinstance(document, dict)
    return {name: entry for table in TABLES.values() for name, entry in (document.get(table) or {}).items()}


# --------------------------------------------------------------------------------------------------
# pixi-pack.json
# --------------------------------------------------------------------------------------------------

_VIRTUAL = re.compile(r"__[a-z0-9_.\-]+(=[A-Za-z0-9_.+!*\-]*){0,2}")


def pack_platform(value: str, source: str) -> str:
    if value not in KNOWN_SUBDIRS or value == "noarch":
        raise refuse(source, "platform", value, "is not a platform rattler knows")
    return value


def virtual_package_entry(value: str, source: str) -> str:
    if len(value) > MAX_FIELD or not _VIRTUAL.fullmatch(value):
        raise refuse(source, "virtual package", value, "is not a '__name=version' entry")
    return value


# --------------------------------------------------------------------------------------------------
# Inside packages: entry points and environment variables
# --------------------------------------------------------------------------------------------------


def entry_point_command(value: object, what: str, *, windows: bool = False) -> Component:
    """The command name of an entry point (``name = module:function``): a plain file name."""
    if not isinstance(value, str) or not _COMMAND.fullmatch(value.strip()):
        raise refuse(what, "entry point", value, "does not name a plain command (letters, digits, '_.+-')")
    return safe_component(value.strip(), what, "entry point", windows=windows)


def link_json_entry_points(data: bytes, what: str, *, windows: bool = False) -> list[str]:
    """The command names a noarch python package's ``info/link.json`` makes, each checked."""
    parsed = load_json(data, f"{what}: info/link.json")
    if not isinstance(parsed, dict):
        return []
    noarch = parsed.get("noarch")
    points = noarch.get("entry_points") if isinstance(noarch, dict) else None
    if points is None:
        return []
    if not isinstance(points, list):
        raise refuse(what, "entry_points", points, "is not a list")
    names = []
    for point in points:
        if not isinstance(point, str) or "=" not in point:
            raise refuse(what, "entry point", point, "is not 'command = module:function'")
        names.append(entry_point_command(point.partition("=")[0], what, windows=windows))
    return names


def env_vars(data: bytes, what: str) -> dict[str, str]:
    """The variables a package's ``etc/conda/env_vars.d/*.json`` sets: names a shell can hold
    (``[A-Za-z_][A-Za-z0-9_]*``), string values without NUL (no shell can hold one)."""
    parsed = load_json(data, what)
    if not isinstance(parsed, dict):
        raise UntrustedDataError(f"refusing {what}: it is not a JSON object of variables")
    result: dict[str, str] = {}
    for key, value in parsed.items():
        problem = env_name_problem(key)
        if problem is not None:
            raise refuse(what, "variable name", key, problem)
        result[key] = env_value(value, what, key)
    return result


def env_value(value: object, what: str, name: str) -> str:
    """A variable's value: a string without NUL (no shell can hold one), of a bounded length."""
    if not isinstance(value, str):
        raise refuse(what, f"value of {name}", value, "is not a string")
    if "\0" in value or len(value) > MAX_PATH * 8:
        raise refuse(what, f"value of {name}", value, "holds a NUL or is too long")
    return value


def wheel_file_name(value: str, what: str = "the pack's pypi/ folder") -> Component:
    """A wheel's file name: one component ending in ``.whl`` (its parts are checked by packaging)."""
    component = safe_component(value, what, "wheel file name")
    if not component.endswith(".whl"):
        raise refuse(what, "wheel file name", value, "does not end with .whl")
    return component


def unique_names(names: Iterable[str], what: str, field: str) -> None:
    """Refuse two names a case-insensitive file system would take for one."""
    seen: dict[str, str] = {}
    for name in names:
        key = alias_key(name)
        if key in seen and seen[key] != name:
            raise refuse(what, field, name, f"collides with '{seen[key]}' on a case-insensitive file system")
        seen[key] = name


def as_path_under(root: Path, relative: str) -> Path:
    """``root / relative`` for a relative path this module accepted (checked once more here)."""
    problem = path_problem(relative)
    if problem is not None:
        raise UntrustedDataError(f"refusing path {shown(relative)}: {problem}")
    return root.joinpath(*split_path(relative))
