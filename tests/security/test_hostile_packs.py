"""Hostile packs: each is refused with one clear line, nothing is written outside the output folder,
and no half-made environment (or output folder) is left behind."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import run

from .conftest import UP_TO_TMP, Outcome
from .hostile import (
    Member,
    dir_member,
    error_line,
    file_member,
    find,
    link_member,
    package_names,
    remove,
    set_data,
    snapshot,
    special_member,
)

Mutation = Callable[[list[Member], Path], None]


def _absolute(members: list[Member], escape: Path) -> None:
    members.insert(0, file_member(str(escape)))


def _dotdot(members: list[Member], escape: Path) -> None:
    members.insert(0, file_member(UP_TO_TMP + escape.name))


def _dotdot_inside(members: list[Member], escape: Path) -> None:
    members.append(file_member("channel/noarch/../../" + UP_TO_TMP + escape.name))


def _backslash(members: list[Member], escape: Path) -> None:
    members.append(file_member(UP_TO_TMP.replace("/", "\\") + escape.name))


def _drive(members: list[Member], escape: Path) -> None:
    members.append(file_member("C:" + escape.name))


def _symlink_out(members: list[Member], escape: Path) -> None:
    members.append(link_member("channel/evil", str(escape)))


def _symlink_relative(members: list[Member], escape: Path) -> None:
    members.append(link_member("evil", UP_TO_TMP + escape.name))


def _hardlink_out(members: list[Member], escape: Path) -> None:
    members.append(link_member("evil", "/etc/passwd", hard=True))


def _hardlink_inside(members: list[Member], escape: Path) -> None:
    members.append(link_member("evil", "pixi-pack.json", hard=True))


def _write_through_symlink(members: list[Member], escape: Path) -> None:
    escape.mkdir()
    members.insert(0, link_member("lnk", str(escape)))
    members.insert(1, file_member("lnk/written-through"))


def _chardev(members: list[Member], escape: Path) -> None:
    members.append(special_member("dev-null", tarfile.CHRTYPE))


def _blockdev(members: list[Member], escape: Path) -> None:
    members.append(special_member("dev-block", tarfile.BLKTYPE))


def _fifo(members: list[Member], escape: Path) -> None:
    members.append(special_member("fifo", tarfile.FIFOTYPE))


def _duplicate_metadata(members: list[Member], escape: Path) -> None:
    members.append(file_member("pixi-pack.json", json.dumps({"version": "1", "platform": "win-64"}).encode()))


def _duplicate_package(members: list[Member], escape: Path) -> None:
    name = package_names(members)[0]
    members.append(file_member(name, b"replaced after the check\n"))


def _dot_slash_duplicate(members: list[Member], escape: Path) -> None:
    members.append(file_member("./environment.yml", b"dependencies: []\n"))


def _file_then_folder(members: list[Member], escape: Path) -> None:
    members.insert(0, file_member("channel-x"))
    members.insert(1, dir_member("channel-x"))


CASES: dict[str, tuple[Mutation, str]] = {
    "absolute path": (_absolute, "absolute path"),
    "dot-dot": (_dotdot, "points outside"),
    "dot-dot inside a folder": (_dotdot_inside, "points outside"),
    "backslash dot-dot": (_backslash, "points outside"),
    "drive letter": (_drive, "absolute path"),
    "symlink to an absolute path": (_symlink_out, "packs hold no links"),
    "symlink climbing out": (_symlink_relative, "packs hold no links"),
    "hardlink outside": (_hardlink_out, "packs hold no links"),
    "hardlink inside": (_hardlink_inside, "packs hold no links"),
    "symlink then a file through it": (_write_through_symlink, "packs hold no links"),
    "character device": (_chardev, "not a regular file"),
    "block device": (_blockdev, "not a regular file"),
    "fifo": (_fifo, "not a regular file"),
    "duplicate pixi-pack.json": (_duplicate_metadata, "twice"),
    "duplicate package": (_duplicate_package, "twice"),
    "duplicate through ./": (_dot_slash_duplicate, "twice"),
    "file, then a folder of that name": (_file_then_folder, "twice"),
}


@pytest.mark.parametrize("stdin", [False, True], ids=["file", "stdin"])
@pytest.mark.parametrize("case", list(CASES))
def test_hostile_member_is_refused(
    case: str,
    stdin: bool,
    members: list[Member],
    escape: Path,
    unpack_hostile: Callable[..., Outcome],
) -> None:
    mutate, message = CASES[case]
    mutate(members, escape)
    outcome = unpack_hostile(members, stdin=stdin)
    line = error_line(outcome.result)
    assert message in line, line
    assert outcome.changed == set(), f"the refused unpack changed {sorted(outcome.changed)}"
    assert not Path("/", escape.name).exists()


METADATA_CASES: dict[str, tuple[bytes | None, str]] = {
    "missing": (None, "has no pixi-pack.json"),
    "empty": (b"", "pixi-pack.json is empty"),
    "whitespace": (b" \n\t", "pixi-pack.json is empty"),
    "not JSON": (b"{version: 1", "not valid JSON"),
    "a JSON list": (b'["1", "linux-64"]', "must be a JSON object"),
    "not UTF-8": (b'{"version": "1", "platform": "\xff\xfe"}', "UTF-8"),
    "numeric version": (b'{"version": 1, "platform": "linux-64"}', "no string 'version'"),
    "null version": (b'{"version": null, "platform": "linux-64"}', "no string 'version'"),
    "unknown version": (b'{"version": "2", "platform": "linux-64"}', "version '2' is not supported"),
    "no platform": (b'{"version": "1"}', "no string 'platform'"),
    "another platform": (b'{"version": "1", "platform": "win-64"}', "made for win-64"),
    "unknown platform": (
        b'{"version": "1", "platform": "amiga-68k"}',
        "'amiga-68k' is not a platform rattler knows",
    ),
}


@pytest.mark.parametrize("stdin", [False, True], ids=["file", "stdin"])
@pytest.mark.parametrize("case", list(METADATA_CASES))
def test_bad_metadata_is_refused(
    case: str, stdin: bool, members: list[Member], unpack_hostile: Callable[..., Outcome]
) -> None:
    data, message = METADATA_CASES[case]
    if data is None:
        remove(members, "pixi-pack.json")
    else:
        set_data(members, "pixi-pack.json", data)
    outcome = unpack_hostile(members, stdin=stdin)
    line = error_line(outcome.result)
    assert message in line, line
    assert outcome.changed == set()


def _missing_package(members: list[Member]) -> None:
    remove(members, package_names(members)[0])


def _other_hash(members: list[Member]) -> None:
    member = find(members, package_names(members)[0])
    assert member.data is not None
    member.data = member.data[:-1] + bytes([member.data[-1] ^ 1])


def _repodata_not_json(members: list[Member]) -> None:
    set_data(members, "channel/noarch/repodata.json", b"{not json")


def _unsafe_file_name(members: list[Member]) -> None:
    repodata = json.loads(find(members, "channel/noarch/repodata.json").data or b"")
    name, record = next(iter(repodata["packages.conda"].items()))
    repodata["packages.conda"][f"../noarch/{name}"] = record
    set_data(members, "channel/noarch/repodata.json", json.dumps(repodata).encode())


def _record_with_other_subdir(members: list[Member]) -> None:
    repodata = json.loads(find(members, "channel/noarch/repodata.json").data or b"")
    for record in repodata["packages.conda"].values():
        record["subdir"] = "../../../../etc"
    set_data(members, "channel/noarch/repodata.json", json.dumps(repodata).encode())


def _no_sha256(members: list[Member]) -> None:
    repodata = json.loads(find(members, "channel/noarch/repodata.json").data or b"")
    for record in repodata["packages.conda"].values():
        record.pop("sha256")
    set_data(members, "channel/noarch/repodata.json", json.dumps(repodata).encode())


REPODATA_CASES: dict[str, tuple[Callable[[list[Member]], None], str]] = {
    "listed file missing": (_missing_package, "is listed in repodata.json but missing"),
    "file with another hash": (_other_hash, "is corrupt: expected sha256"),
    "repodata not JSON": (_repodata_not_json, "repodata.json is malformed"),
    "file name with a folder": (_unsafe_file_name, "contains a path separator"),
    "record claiming another subdir": (_record_with_other_subdir, "subdir"),
    "record without sha256": (_no_sha256, "no sha256"),
}


@pytest.mark.parametrize("case", list(REPODATA_CASES))
def test_bad_channel_is_refused(
    case: str, members: list[Member], unpack_hostile: Callable[..., Outcome]
) -> None:
    mutate, message = REPODATA_CASES[case]
    mutate(members)
    outcome = unpack_hostile(members)
    line = error_line(outcome.result)
    assert message in line, line
    assert outcome.changed == set()


@pytest.mark.parametrize("stdin", [False, True], ids=["file", "stdin"])
@pytest.mark.parametrize("where", ["30%", "60%", "95%", "at a member boundary"])
def test_truncated_pack_is_refused(
    where: str, stdin: bool, good_pack: Path, tmp_path: Path, unpack_hostile: Callable[..., Outcome]
) -> None:
    """A pack cut short (a copy that stopped, a pipe that broke) is refused, even when the cut falls
    exactly between two members, where a tar reader sees a plain end of file."""
    data = good_pack.read_bytes()
    with tarfile.open(good_pack) as tar:
        last = tar.getmembers()[-1]
    content_end = last.offset_data + last.size
    at = last.offset if where == "at a member boundary" else content_end * int(where[:-1]) // 100
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[:at])
    (tmp_path / "run").mkdir()
    before = snapshot(tmp_path)
    output = tmp_path / "run" / "out"
    if stdin:
        result = run("pixi-unpack", "-", "-o", output, input=cut.read_bytes(), check=False)
    else:
        result = run("pixi-unpack", cut, "-o", output, check=False)
    line = error_line(result)
    assert "not a readable tar archive" in line or "cut short" in line, line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("stdin", [False, True], ids=["file", "stdin"])
def test_damaged_header_in_the_middle_is_refused(
    stdin: bool, good_pack: Path, tmp_path: Path, unpack_hostile: Callable[..., Outcome]
) -> None:
    """A header that fails its checksum mid-pack: a tar reader would stop there, silently."""
    data = bytearray(good_pack.read_bytes())
    with tarfile.open(good_pack) as tar:
        member = tar.getmembers()[-1]
    data[member.offset + 148 : member.offset + 156] = b"0000000\0"  # a wrong header checksum
    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes(bytes(data))
    (tmp_path / "run").mkdir()
    before = snapshot(tmp_path)
    output = tmp_path / "run" / "out"
    if stdin:
        result = run("pixi-unpack", "-", "-o", output, input=bytes(data), check=False)
    else:
        result = run("pixi-unpack", damaged, "-o", output, check=False)
    line = error_line(result)
    assert f"the tar header at byte {member.offset} is not valid" in line, line
    assert snapshot(tmp_path) == before


def test_refusal_keeps_an_existing_output_folder_as_it_was(
    members: list[Member], escape: Path, tmp_path: Path, unpack_hostile: Callable[..., Outcome]
) -> None:
    """An output folder the user already had keeps its contents; only our own files go."""
    output = tmp_path / "run" / "out"
    output.mkdir(parents=True)
    (output / "notes.txt").write_text("mine\n")
    _dotdot(members, escape)
    outcome = unpack_hostile(members)
    error_line(outcome.result)
    assert outcome.changed == set()
    assert (output / "notes.txt").read_text() == "mine\n"


def test_the_untouched_pack_unpacks(good_pack: Path, tmp_path: Path) -> None:
    """The baseline every hostile variant starts from is itself fine."""
    run("pixi-unpack", good_pack, "-o", tmp_path / "out")
    assert (tmp_path / "out" / "env" / "conda-meta").is_dir()
