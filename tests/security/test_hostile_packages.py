"""Hostile conda packages inside an otherwise valid pack (right hashes, listed in repodata.json).

rattler links what ``info/paths.json`` says and recreates symlinks as they are; an absolute path in
``paths.json`` even aborts the whole process. pixi-unpack must refuse such packages before rattler
runs: one error line, nothing written outside, no environment left.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pixi_pack_ext.unpack.cache_prefill import STREAM_MIN_SIZE_ENV

from .conftest import Outcome
from .hostile import (
    Member,
    add_package,
    error_line,
    file_member,
    index_json,
    link_member,
    make_package,
    path_entry,
)

#: From the environment (``run/out/env``) up to ``tmp_path``.
UP_FROM_PREFIX = "../../../"

PackageSpec = tuple[list[dict[str, object]], list[Member]]


def _paths_dotdot(escape: Path) -> PackageSpec:
    return [path_entry(UP_FROM_PREFIX + escape.name)], [file_member("share/ok.txt")]


def _paths_absolute(escape: Path) -> PackageSpec:
    return [path_entry(str(escape))], [file_member("share/ok.txt")]


def _paths_backslash(escape: Path) -> PackageSpec:
    return [path_entry(UP_FROM_PREFIX.replace("/", "\\") + escape.name)], [file_member("share/ok.txt")]


def _member_dotdot(escape: Path) -> PackageSpec:
    return [path_entry("share/ok.txt")], [
        file_member("share/ok.txt"),
        file_member(UP_FROM_PREFIX + escape.name),
    ]


def _member_absolute(escape: Path) -> PackageSpec:
    return [path_entry("share/ok.txt")], [file_member("share/ok.txt"), file_member(str(escape))]


def _symlink_absolute(escape: Path) -> PackageSpec:
    return [path_entry("share/lnk", softlink=True)], [link_member("share/lnk", str(escape.parent))]


def _symlink_climbing(escape: Path) -> PackageSpec:
    return [path_entry("share/lnk", softlink=True)], [link_member("share/lnk", "../" + UP_FROM_PREFIX)]


def _hardlink_outside(escape: Path) -> PackageSpec:
    return [path_entry("share/ok.txt")], [
        file_member("share/ok.txt"),
        link_member("share/h", "../../x", hard=True),
    ]


def _write_through_own_symlink(escape: Path) -> PackageSpec:
    escape.mkdir()
    paths = [path_entry("lnk", softlink=True), path_entry("lnk/through.txt")]
    return paths, [link_member("lnk", str(escape)), file_member("lnk/through.txt")]


def _symlink_loop(escape: Path) -> PackageSpec:
    paths = [path_entry("a", softlink=True), path_entry("b", softlink=True), path_entry("a/x.txt")]
    return paths, [link_member("a", "b"), link_member("b", "a")]


SINGLE: dict[str, tuple[Callable[[Path], PackageSpec], str]] = {
    "paths.json with ..": (_paths_dotdot, "'..' component"),
    "paths.json absolute": (_paths_absolute, "absolute path"),
    "paths.json with backslash ..": (_paths_backslash, "'..' component"),
    "member with ..": (_member_dotdot, "refusing package"),
    "absolute member": (_member_absolute, "refusing package"),
    "symlink to an absolute folder": (_symlink_absolute, "points outside the environment"),
    "symlink climbing out": (_symlink_climbing, "points outside the environment"),
    "hardlink member outside": (_hardlink_outside, "refusing package"),
    "file written through its own symlink": (_write_through_own_symlink, "points outside the environment"),
    "symlink loop": (_symlink_loop, "loops"),
}


def _add_hostile_package(case: str, fmt: str, members: list[Member], escape: Path) -> str:
    """Put the ``case`` package (as ``fmt``) into the pack; returns the refusal it should get."""
    build, message = SINGLE[case]
    paths, payload = build(escape)
    index = index_json("evil")
    file_name, data = make_package(index, paths, payload, fmt)
    add_package(members, file_name, data, index)
    return message


@pytest.mark.parametrize("fmt", ["tar.bz2", "conda"])
@pytest.mark.parametrize("case", list(SINGLE))
def test_hostile_package_is_refused(
    case: str, fmt: str, members: list[Member], escape: Path, unpack_hostile: Callable[..., Outcome]
) -> None:
    message = _add_hostile_package(case, fmt, members, escape)
    outcome = unpack_hostile(members)
    line = error_line(outcome.result)
    assert "refusing package evil-1.0-0" in line and message in line, line
    assert outcome.changed == set(), f"the refused unpack changed {sorted(outcome.changed)}"


#: Members rattler's extractor drops without a word. A package extracted straight from the pack
#: (never a file the guard could list) is installed without them; any other case is refused.
DROPPED_BY_THE_EXTRACTOR = {"member with ..", "absolute member", "hardlink member outside"}


@pytest.mark.parametrize("fmt", ["tar.bz2", "conda"])
@pytest.mark.parametrize("case", list(SINGLE))
def test_hostile_package_extracted_straight_from_the_pack_never_escapes(
    case: str, fmt: str, members: list[Member], escape: Path, unpack_hostile: Callable[..., Outcome]
) -> None:
    message = _add_hostile_package(case, fmt, members, escape)
    outcome = unpack_hostile(members, env={STREAM_MIN_SIZE_ENV: "1"})
    outside = {c for c in outcome.changed if not c.startswith("run")}
    assert outside == set() or outside == {escape.name}, outside  # the case's own escape folder
    assert not escape.exists() or (escape.is_dir() and not any(escape.iterdir()))
    if case in DROPPED_BY_THE_EXTRACTOR and outcome.result.returncode == 0:
        assert (outcome.output / "env" / "share" / "ok.txt").is_file()
    else:
        line = error_line(outcome.result)
        assert "refusing package evil-1.0-0" in line and message in line, line
        assert outcome.changed - {escape.name} == set(), sorted(outcome.changed)


@pytest.mark.parametrize("fmt", ["tar.bz2", "conda"])
def test_old_package_listing_a_climbing_path_in_info_files_is_refused(
    fmt: str, members: list[Member], escape: Path, unpack_hostile: Callable[..., Outcome]
) -> None:
    """Without paths.json rattler links what ``info/files`` lists, so that list is checked too."""
    index = index_json("evil")
    listed = ["share/ok.txt", UP_FROM_PREFIX + escape.name]
    file_name, data = make_package(index, None, [file_member("share/ok.txt")], fmt, files_list=listed)
    add_package(members, file_name, data, index)
    outcome = unpack_hostile(members)
    line = error_line(outcome.result)
    assert "refusing package evil-1.0-0" in line and "info/files lists" in line, line
    assert "'..' component" in line, line
    assert outcome.changed == set(), f"the refused unpack changed {sorted(outcome.changed)}"


@pytest.mark.parametrize("fmt", ["tar.bz2", "conda"])
def test_symlink_chain_across_packages_is_refused(
    fmt: str, members: list[Member], escape: Path, unpack_hostile: Callable[..., Outcome]
) -> None:
    """Each link looks harmless alone; together ``z/escaped`` lands above the prefix."""
    first = index_json("chain-a")
    name_a, data_a = make_package(
        first, [path_entry("d/e/y", softlink=True)], [link_member("d/e/y", "../..")], fmt
    )
    second = index_json("chain-b")
    name_b, data_b = make_package(
        second,
        [path_entry("z", softlink=True), path_entry("z/" + escape.name)],
        [link_member("z", "d/e/y/.."), file_member("z/" + escape.name)],
        fmt,
    )
    add_package(members, name_a, data_a, first)
    add_package(members, name_b, data_b, second)
    outcome = unpack_hostile(members)
    line = error_line(outcome.result)
    assert "refusing package chain-b-1.0-0" in line and "points outside the environment" in line, line
    assert outcome.changed == set()


@pytest.mark.parametrize("fmt", ["tar.bz2", "conda"])
def test_package_with_inside_symlinks_installs(
    fmt: str, members: list[Member], tmp_path: Path, unpack_hostile: Callable[..., Outcome]
) -> None:
    """Relative links that stay in the prefix are what real packages ship: they install."""
    index = index_json("linky")
    payload = [
        file_member("lib/libx.so.1", b"library\n"),
        link_member("lib/libx.so", "libx.so.1"),
        link_member("bin/x", "../lib/libx.so.1"),
        link_member("share/linky", "../lib"),
    ]
    paths = [
        path_entry("lib/libx.so.1", b"library\n"),
        path_entry("lib/libx.so", softlink=True),
        path_entry("bin/x", softlink=True),
        path_entry("share/linky", softlink=True),
    ]
    file_name, data = make_package(index, paths, payload, fmt)
    add_package(members, file_name, data, index)
    outcome = unpack_hostile(members)
    assert outcome.result.returncode == 0, outcome.result.stderr.decode()
    env = outcome.output / "env"
    assert os.readlink(env / "lib" / "libx.so") == "libx.so.1"
    assert (env / "bin" / "x").read_text() == "library\n"
    assert (env / "share" / "linky" / "libx.so.1").read_text() == "library\n"
