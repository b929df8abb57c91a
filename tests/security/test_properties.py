"""Property-based tests: any input to a parser gives a result or our own error type, never a crash,
and the package guard's idea of where a path lands agrees with the real file system's."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import ntpath
import os
import posixpath
import tarfile
import tempfile
from pathlib import Path, PureWindowsPath

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from pixi_pack_ext import untrusted
from pixi_pack_ext.archive import safe_extract
from pixi_pack_ext.errors import InvalidPackError, PixiPackError, UnsafeArchiveError
from pixi_pack_ext.metadata import parse_metadata
from pixi_pack_ext.pack.lockfile import read_plan
from pixi_pack_ext.unpack.driver import verify_channel
from pixi_pack_ext.unpack.package_guard import PackageContents, check_contents
from pixi_pack_ext.untrusted import UntrustedDataError

SETTINGS = settings(
    max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


# --------------------------------------------------------------------------------------------------
# pixi-pack.json
# --------------------------------------------------------------------------------------------------


@SETTINGS
@given(st.text())
def test_metadata_from_any_text(text: str) -> None:
    try:
        metadata = parse_metadata(text)
    except InvalidPackError as exc:
        assert "\n" not in str(exc)
        return
    assert metadata.version == "1" and isinstance(metadata.platform, str)


METADATA_KEYS = st.sampled_from(["version", "platform", "pixi-pack-version", "virtual-packages"]) | st.text(
    max_size=6
)


@SETTINGS
@given(st.dictionaries(METADATA_KEYS, json_values | st.sampled_from(["1", "linux-64", "win-64"]), max_size=5))
def test_metadata_from_any_object(data: dict[str, object]) -> None:
    try:
        metadata = parse_metadata(json.dumps(data))
    except InvalidPackError:
        return
    assert data["version"] == "1" and data["platform"] == metadata.platform


# --------------------------------------------------------------------------------------------------
# repodata.json inside a pack
# --------------------------------------------------------------------------------------------------

PACKAGE = b"not really a package, but its hash is right\n"
RECORD_KEYS = st.sampled_from(
    ["name", "version", "build", "build_number", "depends", "constrains", "subdir", "noarch", "md5", "size"]
)
REAL_VALUES = st.sampled_from(["a", "1.0", "0", 0, ["b >=1"], "noarch", "generic", "python", 12, -1, ""])


@SETTINGS
@given(
    st.dictionaries(RECORD_KEYS, REAL_VALUES | json_values, max_size=10),
    st.dictionaries(st.sampled_from(["info", "repodata_version", "removed", "packages"]), json_values),
)
def test_repodata_from_any_record(record: dict[str, object], top: dict[str, object]) -> None:
    """Records with any fields (and the right sha256) parse or are refused with our error."""
    with tempfile.TemporaryDirectory() as scratch:
        noarch = Path(scratch) / "channel" / "noarch"
        noarch.mkdir(parents=True)
        (noarch / "a-1.0-0.tar.bz2").write_bytes(PACKAGE)
        record = {**record, "sha256": hashlib.sha256(PACKAGE).hexdigest()}
        document = {**top, "packages": {"a-1.0-0.tar.bz2": record}}
        (noarch / "repodata.json").write_text(json.dumps(document))
        try:
            records = verify_channel(Path(scratch))
        except InvalidPackError:
            return
        assert all(Path(r.url.removeprefix("file://")).parent == noarch for r in records)


@SETTINGS
@given(st.binary(max_size=300))
def test_repodata_from_any_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        noarch = Path(scratch) / "channel" / "noarch"
        noarch.mkdir(parents=True)
        (noarch / "repodata.json").write_bytes(data)
        with contextlib.suppress(InvalidPackError):
            verify_channel(Path(scratch))


# --------------------------------------------------------------------------------------------------
# pixi.lock
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lock_text(workspace: Path) -> str:
    return (workspace / "pixi.lock").read_text()


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    """A real lock with a few lines deleted, duplicated, cut, or given other values."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        operation = draw(st.sampled_from(["delete", "duplicate", "value", "cut", "insert", "indent"]))
        line = lines[index]
        if operation == "delete":
            del lines[index]
        elif operation == "duplicate":
            lines.insert(index, line)
        elif operation == "value" and ": " in line:
            key = line.split(": ", 1)[0]
            value = draw(
                st.sampled_from(["", "null", "7", "-1", "[]", "{}", "'x'", "99", "*"]) | st.text(max_size=8)
            )
            lines[index] = f"{key}: {value}"
        elif operation == "cut":
            lines[index] = line[: draw(st.integers(0, len(line)))]
        elif operation == "insert":
            lines.insert(index, draw(st.text(max_size=20)))
        else:
            lines[index] = "  " + line
        if not lines:
            lines = [""]
    return "\n".join(lines) + "\n"


@SETTINGS
@given(data=st.data())
def test_lock_from_mutated_text(lock_text: str, data: st.DataObject) -> None:
    text = data.draw(mutated(lock_text))
    with tempfile.TemporaryDirectory() as scratch:
        lock = Path(scratch) / "pixi.lock"
        lock.write_text(text)
        try:
            plan = read_plan(lock, "prod", "linux-64")
        except PixiPackError as exc:
            assert str(exc).strip()
            return
        assert plan.platform == "linux-64"


@SETTINGS
@given(st.binary(max_size=400))
def test_lock_from_any_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        lock = Path(scratch) / "pixi.lock"
        lock.write_bytes(data)
        with contextlib.suppress(PixiPackError):
            read_plan(lock, "default", "linux-64")


# --------------------------------------------------------------------------------------------------
# Tar streams and package paths
# --------------------------------------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "c"])
HOSTILE_NAMES = st.sampled_from(["a", "b", "..", ".", "/", "a/..", "../a", "c/", "", "\\"])


@st.composite
def tar_streams(draw: st.DrawFn) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for _ in range(draw(st.integers(0, 6))):
            info = tarfile.TarInfo("/".join(draw(st.lists(HOSTILE_NAMES, min_size=1, max_size=3))))
            info.type = draw(
                st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE])
            )
            info.linkname = draw(st.sampled_from(["a", "../..", "/etc"]))
            data = draw(st.binary(max_size=20)) if info.type == tarfile.REGTYPE else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    if draw(st.booleans()):  # damage it
        position = draw(st.integers(0, len(raw)))
        raw = raw[:position] + draw(st.binary(max_size=600)) + raw[position + draw(st.integers(0, 600)) :]
    return raw


@SETTINGS
@given(tar_streams())
def test_safe_extract_writes_only_inside(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        dest = Path(scratch) / "x" / "y" / "dest"
        with contextlib.suppress(UnsafeArchiveError):
            safe_extract(io.BytesIO(raw), dest)
        outside = {str(p.relative_to(scratch)) for p in Path(scratch).rglob("*")}
        assert outside - {"x", "x/y", "x/y/dest"} <= {p for p in outside if p.startswith("x/y/dest/")}
        assert not any(p.is_symlink() for p in Path(scratch).rglob("*"))


@st.composite
def link_layouts(draw: st.DrawFn) -> PackageContents:
    links = draw(
        st.dictionaries(
            st.lists(NAMES, min_size=1, max_size=3).map("/".join),
            st.lists(NAMES | st.sampled_from(["..", "."]), min_size=1, max_size=4).map("/".join),
            max_size=4,
        )
    )
    files = draw(st.lists(st.lists(NAMES, min_size=1, max_size=3).map("/".join), max_size=4))
    return PackageContents("p", paths=[*links, *files], symlinks=links)


@SETTINGS
@given(link_layouts())
# "a" cannot become a link once "a/a" made it a folder; "a/a" -> "../.." then leaves the prefix
@example(PackageContents("p", paths=["a/a", "a"], symlinks={"a/a": "../..", "a": "b/a"}))
def test_guard_agrees_with_the_file_system(package: PackageContents) -> None:
    """When the guard accepts a layout, making it for real writes nothing outside the prefix."""
    try:
        check_contents([package])
    except UnsafeArchiveError:
        return
    with tempfile.TemporaryDirectory() as scratch:
        prefix = Path(scratch) / "1" / "2" / "3" / "4" / "prefix"
        prefix.mkdir(parents=True)
        made: list[str] = []
        for name in package.paths:
            target = prefix / name
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                if name in package.symlinks:
                    os.symlink(package.symlinks[name], target)
                else:
                    target.write_text("x")
            except OSError:
                continue  # rattler would fail here too (a file where a folder should be, ...)
            made.append(name)
        assume(made)
        for name in made:
            real = Path(os.path.realpath(prefix / name))
            assert real == prefix.resolve() or prefix.resolve() in real.parents, (name, real)
        everything = {p for p in Path(scratch).rglob("*")}
        assert all(p == prefix or prefix in p.parents or p in prefix.parents for p in everything)


# --------------------------------------------------------------------------------------------------
# The untrusted-data gate: whatever it accepts is a single safe path component (or a path that
# stays below its root), on POSIX and on Windows
# --------------------------------------------------------------------------------------------------

HOSTILE_TEXT = st.lists(
    st.sampled_from(
        ["a", "Z", "0", ".", "..", "/", "\\", ":", "\0", "\n", " ", "-", "_", "+", "é", "ﬀ", "C:"]
    )
    | st.characters(),
    max_size=8,
).map("".join)
ROOT = "/r/o/o/t"


def _stays_below(root: str, path: str, windows: bool) -> bool:
    """Below ``root`` as POSIX joins it, and (for a Windows environment) as Windows does."""
    posix = posixpath.normpath(posixpath.join(root, path.replace("\\", "/")))
    if not posix.startswith(root + "/"):
        return False
    return not windows or ntpath.normpath(ntpath.join("D:\\r\\o\\o\\t", path)).startswith("D:\\r\\o\\o\\t\\")


@SETTINGS
@given(HOSTILE_TEXT, st.booleans())
@example(".", False)
@example("..", True)
@example("C:x", True)
@example("nul.txt", True)
@example("a" * 256, False)
def test_an_accepted_component_is_one_safe_component(value: str, windows: bool) -> None:
    try:
        accepted = untrusted.safe_component(value, "a package", "name", windows=windows)
    except UntrustedDataError as exc:
        assert "\n" not in str(exc) and "\0" not in str(exc)
        return
    assert accepted == value and accepted not in ("", ".", "..")
    assert not any(c in accepted for c in "/\\\0")
    assert len(accepted.encode("utf-8", "surrogatepass")) <= untrusted.MAX_COMPONENT
    assert _stays_below(ROOT, accepted, windows)
    assert posixpath.dirname(posixpath.join(ROOT, accepted)) == ROOT
    if windows:
        assert ":" not in accepted and PureWindowsPath("D:/root", accepted).parent == PureWindowsPath(
            "D:/root"
        )


@SETTINGS
@given(st.lists(HOSTILE_TEXT, min_size=1, max_size=4).map("/".join), st.booleans())
@example("a/../../b", False)
@example("a\\..\\..\\b", True)
@example("/etc/passwd", False)
@example("C:\\Windows", True)
@example("a/C:b", True)
def test_an_accepted_relative_path_stays_below_its_root(value: str, windows: bool) -> None:
    try:
        relative = untrusted.safe_relative_path(value, "a package", "path", windows=windows)
    except UntrustedDataError:
        return
    assert _stays_below(ROOT, relative, windows)
    assert untrusted.as_path_under(Path(ROOT), relative).is_relative_to(ROOT)


IDENTITY_TEXT = st.text(st.sampled_from(list("aZ09._-+!/\\\0 é")), min_size=0, max_size=8)


@SETTINGS
@given(IDENTITY_TEXT, IDENTITY_TEXT, IDENTITY_TEXT, st.sampled_from([".conda", ".tar.bz2"]))
def test_an_accepted_record_names_a_plain_cache_folder_and_its_own_file(
    name: str, version: str, build: str, extension: str
) -> None:
    file_name = f"{name}-{version}-{build}{extension}"
    entry = {"name": name, "version": version, "build": build, "build_number": 0, "sha256": "0" * 64}
    table = untrusted.TABLES[extension]
    try:
        record = untrusted.repodata_record(file_name, table, entry, "noarch")
    except UntrustedDataError as exc:
        assert "\n" not in str(exc)
        return
    folder = untrusted.cache_folder_name(record["name"], record["version"], record["build"])
    assert untrusted.component_problem(folder) is None and not folder.startswith(".")
    assert posixpath.dirname(posixpath.join(ROOT, folder)) == ROOT
    assert file_name == f"{record['name']}-{record['version']}-{record['build']}{extension}"


REAL_NAMES = [
    "_libgcc_mutex",
    "_openmp_mutex",
    "python-dateutil",
    "r-base",
    "libstdcxx-ng",
    "zope.interface",
    "ca-certificates",
    "python_abi",
    "font-ttf-dejavu-sans-mono",
    "c-ares",
    "x264",
    "Pillow",
]
REAL_VERSIONS = [
    "2023.7.22",
    "1.26.4",
    "3.11.7",
    "0.1.0rc1",
    "1.0.0.post1",
    "2!1.0",
    "1.2.3+local",
    "9e",
    "20230802.1",
    "1.0_1",
    "4.0.0.dev0",
    "2.1.5.1",
]
REAL_BUILDS = [
    "conda_forge",
    "h7f98852_4",
    "pyhd8ed1ab_0",
    "py311h06a4308_0",
    "2_gnu",
    "0",
    "py_0",
    "cuda112py39h1234567_0",
    "h4616a5c_0",
    "hb0f4dca_0",
    "1_cp311",
    "py311hd3d4f6b_0_cpython",
]


@pytest.mark.parametrize(
    "name, version, build", list(zip(REAL_NAMES, REAL_VERSIONS, REAL_BUILDS, strict=True))
)
def test_real_package_identities_are_accepted(name: str, version: str, build: str) -> None:
    for extension, table in untrusted.TABLES.items():
        entry = {"name": name, "version": version, "build": build, "build_number": 0, "sha256": "a" * 64}
        record = untrusted.repodata_record(f"{name}-{version}-{build}{extension}", table, entry, "linux-64")
        assert (record["name"], record["version"], record["build"]) == (name, version, build)


@SETTINGS
@given(st.dictionaries(HOSTILE_TEXT, HOSTILE_TEXT | st.integers() | st.none(), max_size=4))
def test_accepted_environment_variables_are_shell_names_without_nul(variables: dict[str, object]) -> None:
    try:
        accepted = untrusted.env_vars(
            json.dumps(variables).encode(), "package x: etc/conda/env_vars.d/x.json"
        )
    except UntrustedDataError as exc:
        assert "\n" not in str(exc)
        return
    for key, value in accepted.items():
        assert key and (key[0].isascii() and (key[0].isalpha() or key[0] == "_"))
        assert all(c.isascii() and (c.isalnum() or c == "_") for c in key) and "=" not in key
        assert "\0" not in value


def test_a_rust_panic_becomes_our_error_and_an_interrupt_passes() -> None:
    """rattler's panics arrive as pyo3's PanicException, a BaseException: one line, not a crash."""

    class PanicException(BaseException):  # the name pyo3 gives it; not importable without a panic
        pass

    untrusted.reraise_interrupts(PanicException("boom"))  # returns: the caller makes it one line
    untrusted.reraise_interrupts(ValueError("bad"))
    for interrupt in (KeyboardInterrupt(), SystemExit(1)):
        with pytest.raises(type(interrupt)):
            untrusted.reraise_interrupts(interrupt)


@SETTINGS
@given(st.lists(st.sampled_from(["a", "B", ".", "..", "", "/", "\\", "é"]), max_size=8).map("".join))
def test_the_quick_path_split_is_the_plain_one(path: str) -> None:
    """``split_path`` skips its filter for plain paths; it must give what the filter gives."""
    assert untrusted.split_path(path) == [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
