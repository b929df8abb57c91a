"""Untrusted data in a pack: records, names, JSON, entry points and environment variables.

Every hostile value is refused with one line naming the field, the value and the package, exit
non-zero, no traceback, and nothing changes on disk outside (or inside) the output folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rattler

from pixi_pack_ext.errors import InvalidPackError, UnpackError, UnsafeArchiveError
from pixi_pack_ext.unpack.cache_prefill import cache_folder_name
from pixi_pack_ext.unpack.package_guard import PackageContents, check_contents
from pixi_pack_ext.unpack.wheel_install import check_staged_files

from .conftest import Outcome
from .hostile import (
    Member,
    add_package,
    error_line,
    file_member,
    find,
    index_json,
    make_package,
    path_entry,
    set_data,
)

NOARCH_REPODATA = "channel/noarch/repodata.json"
#: Enough ``..`` to climb from any staging or cache folder to the root.
TO_ROOT = "../" * 40


def _edit_record(members: list[Member], edit: Callable[[dict[str, Any]], object]) -> None:
    """Change the first ``.conda`` record of the pack's noarch repodata.json (hashes stay right)."""
    repodata = json.loads(find(members, NOARCH_REPODATA).data or b"")
    table = repodata["packages.conda"]
    name = next(iter(table))
    replaced = edit(table[name])
    if replaced is not None:
        table[name] = replaced
    set_data(members, NOARCH_REPODATA, json.dumps(repodata).encode())


def _field(key: str, value: object) -> Callable[[dict[str, Any], Path], object]:
    def edit(record: dict[str, Any], escape: Path) -> None:
        record[key] = value

    return edit


def _climbing_build(record: dict[str, Any], escape: Path) -> None:
    record["build"] = record["build"] + "/" + TO_ROOT + str(escape).lstrip("/")


def _climbing_site_packages(record: dict[str, Any], escape: Path) -> None:
    record["python_site_packages_path"] = TO_ROOT + str(escape).lstrip("/")


def _absolute_site_packages(record: dict[str, Any], escape: Path) -> None:
    record["python_site_packages_path"] = str(escape)


def _other_version(record: dict[str, Any], escape: Path) -> None:
    record["version"] = record["version"] + ".1"


def _not_an_object(record: dict[str, Any], escape: Path) -> object:
    return ["name", "version"]


def _deep(record: dict[str, Any], escape: Path) -> None:
    nested: object = "x"
    for _ in range(100):
        nested = [nested]
    record["depends"] = nested


RECORD_CASES: dict[str, tuple[Callable[[dict[str, Any], Path], object], str]] = {
    "build climbing out": (_climbing_build, "its build '"),
    "name ..": (_field("name", ".."), "is not a conda package name"),
    "name with a slash": (_field("name", "a/../../b"), "is not a conda package name"),
    "virtual name": (_field("name", "__glibc"), "is a virtual package"),
    "name not a string": (_field("name", 5), "its name '5' is not a string"),
    "version with a slash": (_field("version", "1/../.."), "is not a conda version"),
    "version rattler cannot read": (_field("version", "9" * 30), "is not a version rattler can read"),
    "very long version": (_field("version", "1." * 300), "is longer than 200 characters"),
    "version with NUL": (_field("version", "1\0"), "is not a conda version"),
    "build with NUL": (_field("build", "0\0"), "is not a conda build string"),
    "empty build": (_field("build", ""), "its build '' is empty"),
    "sha256 not hex": (_field("sha256", "zz" * 32), "is not 64 hexadecimal digits"),
    "md5 too short": (_field("md5", "00"), "is not 32 hexadecimal digits"),
    "negative size": (_field("size", -1), "is not a whole number"),
    "huge build number": (_field("build_number", 10**30), "is not a whole number"),
    "float build number": (_field("build_number", 1.5), "is not a whole number"),
    "boolean size": (_field("size", True), "is not a whole number"),
    "timestamp out of range": (_field("timestamp", 2**63 - 1), "repodata.json is malformed"),
    "depends not a list": (_field("depends", "python"), "is not a list of strings"),
    "depends with a number": (_field("depends", [1]), "is not a string"),
    "unreadable virtual depends": (_field("depends", ["__glibc >=<1"]), "is not a match spec"),
    "noarch of another kind": (_field("noarch", "foo"), "is not 'python', 'generic'"),
    "site-packages climbing out": (_climbing_site_packages, "is a '..' component"),
    "site-packages absolute": (_absolute_site_packages, "is an absolute path"),
    "subdir of another folder": (_field("subdir", "win-64"), "differs from its folder 'noarch'"),
    "unknown subdir": (_field("subdir", "../../etc"), "is not a platform rattler knows"),
    "file named after another version": (_other_version, "(name-version-build)"),
    "fn naming another file": (_field("fn", "../x.conda"), "its fn '../x.conda' differs"),
    "record not an object": (_not_an_object, "is not a JSON object"),
    "deeply nested field": (_deep, "nests more than 64 levels"),
}


@pytest.mark.parametrize("case", list(RECORD_CASES))
def test_hostile_record_is_refused(
    case: str, members: list[Member], escape: Path, unpack_hostile: Callable[..., Outcome]
) -> None:
    edit, message = RECORD_CASES[case]
    _edit_record(members, lambda record: edit(record, escape))
    outcome = unpack_hostile(members)
    line = error_line(outcome.result)
    assert message in line, line
    assert "Traceback" not in outcome.result.stderr.decode() and "panicked" not in line
    assert outcome.changed == set(), f"the refused unpack changed {sorted(outcome.changed)}"
    assert not escape.exists() and not Path("/", escape.name).exists()


def test_crafted_record_cannot_name_a_cache_folder_outside(tmp_path: Path) -> None:
    """By construction: the cache folder of a record (however it was read) is one plain name."""
    record = {"name": "evil", "version": "1.0", "build": "0/" + TO_ROOT + "tmp/escaped", "build_number": 0}
    repodata = tmp_path / "repodata.json"
    repodata.write_text(json.dumps({"packages": {"evil-1.0-0.tar.bz2": record}}))
    crafted = rattler.RepoData.from_path(repodata).into_repo_data(rattler.Channel(tmp_path.as_uri() + "/"))
    with pytest.raises(InvalidPackError, match="is not a plain folder name"):
        cache_folder_name(crafted[0])


def _deep_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("key", ["x", "environments", "delta"])
@pytest.mark.parametrize("depth", [100, 100_000])
@pytest.mark.parametrize("where", ["pixi-pack.json", NOARCH_REPODATA])
def test_deeply_nested_json_is_refused(
    where: str, depth: int, key: str, members: list[Member], unpack_hostile: Callable[..., Outcome]
) -> None:
    """Also where a pack of several environments or a delta pack keeps its lists."""
    version = "1" if key == "x" else "2"
    document = f'{{"version": "{version}", "platform": "linux-64", "{key}": '.encode()
    set_data(members, where, document + _deep_json(depth) + b"}")
    outcome = unpack_hostile(members)
    line = error_line(outcome.result)
    assert "nests" in line and where.rpartition("/")[2] in line, line
    assert outcome.changed == set()


# --------------------------------------------------------------------------------------------------
# Inside packages: environment variables, entry points, conda-meta
# --------------------------------------------------------------------------------------------------


def _package_with_file(
    members: list[Member], path: str, data: bytes, *, name: str = "evil", info: tuple[Member, ...] = ()
) -> None:
    index = index_json(name)
    file_name, package = make_package(
        index, [path_entry(path, data)], [file_member(path, data)], "conda", info_members=info
    )
    add_package(members, file_name, package, index)


ENV_VARS_CASES: dict[str, tuple[bytes, str]] = {
    "key with =": (b'{"A=B": "x"}', "its variable name 'A=B'"),
    "empty key": (b'{"": "x"}', "its variable name ''"),
    "key with NUL": (b'{"A\\u0000B": "x"}', "its variable name 'A\\x00B'"),
    "key with a command": (b'{"$(touch /tmp/x)": "x"}', "its variable name '$(touch /tmp/x)'"),
    "value with NUL": (b'{"A": "x\\u0000y"}', "its value of A"),
    "value not a string": (b'{"A": ["x"]}', "its value of A"),
    "not an object": (b'["A", "x"]', "is not a JSON object of variables"),
    "not JSON": (b"{A: x", "is not valid JSON"),
    "deeply nested": (b'{"A": ' + _deep_json(100_000) + b"}", "nests too deeply"),
}


@pytest.mark.parametrize("case", list(ENV_VARS_CASES))
def test_hostile_env_vars_are_refused(
    case: str, members: list[Member], unpack_hostile: Callable[..., Outcome]
) -> None:
    data, message = ENV_VARS_CASES[case]
    _package_with_file(members, "etc/conda/env_vars.d/evil.json", data)
    outcome = unpack_hostile(members)
    line = error_line(outcome.result)
    assert "evil-1.0-0.conda" in line and "etc/conda/env_vars.d/evil.json" in line, line
    assert message in line, line
    assert outcome.changed == set()


def test_plain_env_vars_install(members: list[Member], unpack_hostile: Callable[..., Outcome]) -> None:
    """What real packages set (names of letters, digits and '_', any printable value) installs."""
    _package_with_file(members, "etc/conda/env_vars.d/fine.json", b'{"FINE_1": "a b; $c"}', name="fine")
    outcome = unpack_hostile(members)
    assert outcome.result.returncode == 0, outcome.result.stderr.decode()
    assert (outcome.output / "env" / "etc" / "conda" / "env_vars.d" / "fine.json").is_file()


ENTRY_POINTS: dict[str, str] = {
    "climbing": "../../../escaped",
    "absolute": "/tmp/escaped",
    "with a separator": "bin/x",
    "dot-dot": "..",
    "with a NUL": "a\u0000b",
    "a shell command": "$(touch x)",
}


@pytest.mark.parametrize("case", list(ENTRY_POINTS))
def test_hostile_entry_point_is_refused(
    case: str, members: list[Member], unpack_hostile: Callable[..., Outcome]
) -> None:
    """rattler writes a noarch python package's entry points to ``bin/<name>``: a name must be one."""
    link = {"noarch": {"type": "python", "entry_points": [f"{ENTRY_POINTS[case]} = os:getcwd"]}}
    info = (file_member("info/link.json", json.dumps(link).encode()),)
    _package_with_file(members, "site-packages/evil.py", b"", info=info)
    outcome = unpack_hostile(members)
    line = error_line(outcome.result)
    assert "evil-1.0-0.conda" in line and "its entry point" in line, line
    assert outcome.changed == set()


def test_package_writing_into_conda_meta_is_refused(
    members: list[Member], unpack_hostile: Callable[..., Outcome]
) -> None:
    """A file in conda-meta would be taken for an installed package (or its state) later."""
    _package_with_file(members, "conda-meta/fake-1.0-0.json", b'{"name": "fake"}')
    outcome = unpack_hostile(members)
    line = error_line(outcome.result)
    assert "evil-1.0-0.conda" in line and "conda-meta" in line, line
    assert outcome.changed == set()


# --------------------------------------------------------------------------------------------------
# Second look: names a case-insensitive or Windows file system reads otherwise, and links that make
# a checked path land where it was not checked
# --------------------------------------------------------------------------------------------------


def test_link_escaping_only_through_a_case_alias_is_refused() -> None:
    """``d/X -> ..`` stays inside, ``a -> d/x/..`` too as written; on macOS or Windows ``d/x`` is
    ``d/X``, so ``a`` is the prefix's parent and ``a/escaped`` lands outside."""
    package = PackageContents(
        "alias-1.0-0.conda",
        paths=["d/X", "a", "a/escaped"],
        symlinks={"d/X": "..", "a": "d/x/.."},
    )
    with pytest.raises(UnsafeArchiveError, match="points outside the environment"):
        check_contents([package])


def test_link_escaping_only_through_a_unicode_alias_is_refused() -> None:
    """macOS's file systems also take the composed and decomposed forms of a name for one."""
    composed, decomposed = "\u00e9", "e\u0301"
    package = PackageContents(
        "alias-1.0-0.conda",
        paths=[f"d/{composed}", "a", "a/escaped"],
        symlinks={f"d/{composed}": "..", "a": f"d/{decomposed}/.."},
    )
    with pytest.raises(UnsafeArchiveError, match="points outside the environment"):
        check_contents([package])


def test_writing_into_conda_meta_through_a_link_is_refused() -> None:
    package = PackageContents(
        "meta-1.0-0.conda", paths=["share/m", "share/m/fake.json"], symlinks={"share/m": "../conda-meta"}
    )
    with pytest.raises(UnsafeArchiveError, match="conda-meta through a symlink"):
        check_contents([package])


@pytest.mark.parametrize(
    "links, paths",
    [
        ({"etc/conda/env_vars.d/x.json": "../../../share/x.json"}, []),
        ({"etc/conda": "../share/c"}, []),
        ({"x": "etc/conda"}, ["x/env_vars.d/y.json"]),
    ],
    ids=["a variables file that is a link", "a linked etc/conda", "a file written through a link"],
)
def test_environment_variables_reached_through_a_link_are_refused(
    links: dict[str, str], paths: list[str]
) -> None:
    """Activation reads every ``etc/conda/env_vars.d/*.json``: each must be a file the guard read."""
    package = PackageContents("vars-1.0-0.conda", paths=[*links, *paths], symlinks=links)
    with pytest.raises(UnsafeArchiveError, match=r"environment variables that were never checked|unchecked"):
        check_contents([package])


@pytest.mark.parametrize("path", ["bin/CON", "Lib/aux.py", "Scripts/x:stream", "share/dots.", "C:x"])
def test_names_windows_reads_otherwise_are_refused_for_windows_packs(path: str) -> None:
    package = PackageContents("win-1.0-0.conda", paths=[path], members=[path])
    with pytest.raises(UnsafeArchiveError, match=r"refusing package win-1\.0-0\.conda"):
        check_contents([package], "win-64")
    if not path.startswith("C:"):
        check_contents([package], "linux-64")  # a plain name on Linux (Perl's man pages have '::')


def test_wheel_file_landing_in_conda_meta_through_a_link_is_refused(tmp_path: Path) -> None:
    """A conda package's link (``share/m -> ../conda-meta``, inside the prefix, so allowed) must not
    carry a wheel's file into conda-meta."""
    prefix, staged = tmp_path / "env", tmp_path / "staged"
    (prefix / "conda-meta").mkdir(parents=True)
    (prefix / "share").mkdir()
    (prefix / "share" / "m").symlink_to("../conda-meta")
    (staged / "share" / "m").mkdir(parents=True)
    (staged / "share" / "m" / "fake-1.0-0.json").write_text('{"name": "fake"}')
    with pytest.raises(UnpackError, match="into the environment's conda-meta"):
        check_staged_files(staged, prefix, "linux-64", {"share/m/fake-1.0-0.json": "w-1.0-py3-none-any.whl"})


def test_wheel_environment_variables_are_checked(tmp_path: Path) -> None:
    prefix, staged = tmp_path / "env", tmp_path / "staged"
    (prefix / "conda-meta").mkdir(parents=True)
    (staged / "etc" / "conda" / "env_vars.d").mkdir(parents=True)
    (staged / "etc" / "conda" / "env_vars.d" / "w.json").write_text('{"A=B": "x"}')
    with pytest.raises(InvalidPackError, match="its variable name 'A=B'"):
        check_staged_files(staged, prefix, "linux-64", {})


@pytest.mark.parametrize("stdin", [False, True], ids=["file", "stdin"])
def test_control_characters_from_the_pack_never_reach_the_terminal(
    stdin: bool, members: list[Member], unpack_hostile: Callable[..., Outcome]
) -> None:
    """A name from the pack is shown in the error line with its control characters escaped: it
    cannot retitle or recolour the terminal, nor start a second line."""
    members.insert(0, file_member("../\x1b]0;pwned\x07\x1b[2J\nsecond line"))
    outcome = unpack_hostile(members, stdin=stdin)
    line = error_line(outcome.result)
    stderr = outcome.result.stderr.decode()
    assert "\x1b" not in stderr and "\x07" not in stderr, repr(stderr)
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\nsecond line" in line, line
    assert outcome.changed == set()
