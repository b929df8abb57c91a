"""Hostile packs against delta packs, packs of several environments and the unpacker's journal.

Each test writes a real pack (rewritten from the demo's real pack), runs the real ``pixi-unpack``
and checks what a user would: one error line, a non-zero exit, no traceback, and nothing changed
outside the output folder.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import run

from pixi_pack_ext.metadata import SEAL_FILES
from pixi_pack_ext.package_set import PackageSet, installed_records, installed_set

from .hostile import (
    Member,
    add_package,
    error_line,
    file_member,
    find,
    index_json,
    make_package,
    path_entry,
    read_members,
    set_data,
    snapshot,
    write_pack,
)


def _editable(pack: Path) -> list[Member]:
    """The pack's members without its manifest: an attacker who edits a pack drops it (packs that
    keep one are refused by it first, see tests/test_signing.py)."""
    return [m for m in read_members(pack) if m.info.name not in SEAL_FILES]


# --------------------------------------------------------------------------------------------------
# Packs of several environments
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def multi_pack(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pack = tmp_path_factory.mktemp("multi") / "multi.tar"
    run("pixi-pack", workspace, "-e", "default", "-e", "prod", "-p", "linux-64", "-o", pack)
    return pack


def _metadata(members: list[Member]) -> dict[str, object]:
    return json.loads(find(members, "pixi-pack.json").data or b"{}")


def _unpack(
    tmp_path: Path, members: list[Member], *extra: str
) -> tuple[subprocess.CompletedProcess[bytes], set[str]]:
    """Unpack the members into tmp_path/run/out; what changed under tmp_path outside run/out."""
    pack = write_pack(tmp_path / "hostile.tar", members)
    (tmp_path / "run").mkdir(exist_ok=True)
    before = snapshot(tmp_path)
    result = run("pixi-unpack", pack, "-o", tmp_path / "run" / "out", *extra, check=False)
    after = snapshot(tmp_path)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    return result, {k for k in changed if not k.startswith("run")}


def test_deeply_nested_environments_are_one_line(multi_pack: Path, tmp_path: Path) -> None:
    members = _editable(multi_pack)
    set_data(
        members,
        "pixi-pack.json",
        b'{"version": "2", "environments": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    )
    for extra in ((), ("--all",)):
        result, changed = _unpack(tmp_path, members, *extra)
        line = error_line(result)
        assert "pixi-pack.json" in line
        assert not changed


def test_deeply_nested_delta_is_one_line(multi_pack: Path, tmp_path: Path) -> None:
    members = _editable(multi_pack)
    set_data(
        members, "pixi-pack.json", b'{"version": "2", "delta": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    )
    result, changed = _unpack(tmp_path, members)
    assert "pixi-pack.json" in error_line(result)
    assert not changed


def test_all_with_hostile_environment_names(multi_pack: Path, tmp_path: Path) -> None:
    """Names that are activation scripts of other environments, or too long for a folder."""
    members = _editable(multi_pack)
    data = _metadata(members)
    environments = data["environments"]
    assert isinstance(environments, dict)
    prod = environments.pop("prod")
    for name in ("activate.sh", "x" * 300, "Env", ".hidden"):
        environments[name] = prod
        set_data(members, "pixi-pack.json", json.dumps(data).encode())
        result, changed = _unpack(tmp_path, members, "--all")
        assert "not a plain name" in error_line(result)
        assert not changed and not (tmp_path / "run" / "out").exists()
        del environments[name]


def test_hostile_deltas_of_several_environments_are_one_line(multi_pack: Path, tmp_path: Path) -> None:
    """A delta member on some environments only, or one whose digest is not its lines' sha256."""
    members = _editable(multi_pack)
    data = _metadata(members)
    environments = data["environments"]
    assert isinstance(environments, dict)
    lines = ["conda hello-bin=1.0=hb0f4dca_0 " + "0" * 64]
    digest = PackageSet.of(lines).digest
    member = {"base": digest, "target": digest, "base-packages": lines, "target-packages": lines}
    environments["prod"]["linux-64"]["delta"] = member
    for extra, expected in (
        (("--environment", "prod"), "has a 'delta' for some environments but not all"),
        (("--all",), "has a 'delta' for some environments but not all"),
    ):
        set_data(members, "pixi-pack.json", json.dumps(data).encode())
        result, changed = _unpack(tmp_path, members, *extra)
        assert expected in error_line(result)
        assert not changed and not (tmp_path / "run" / "out").exists()
    environments["default"]["linux-64"]["delta"] = {**member, "base": "0" * 64}
    set_data(members, "pixi-pack.json", json.dumps(data).encode())
    result, changed = _unpack(tmp_path, members, "--environment", "prod")
    assert (
        "'environments.default.linux-64.delta.base' that is not the sha256 of its package lines"
        in error_line(result)
    )
    assert not changed and not (tmp_path / "run" / "out").exists()


# --------------------------------------------------------------------------------------------------
# Delta packs, hand-made against an installed demo environment
# --------------------------------------------------------------------------------------------------


def _installed(good_pack: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run" / "out"
    run("pixi-unpack", good_pack, "-o", out)
    return out


def _delta(
    good_pack: Path, env: Path, add: list[tuple[str, bytes, dict[str, object]]], drop_pypi: bool = False
) -> list[Member]:
    """A delta pack whose base is ``env`` as installed and which ships (only) the packages ``add``."""
    members = [m for m in _editable(good_pack) if not m.info.name.endswith((".conda", ".tar.bz2"))]
    for member in members:
        if member.info.name.endswith("repodata.json"):
            set_data(
                members,
                member.info.name,
                json.dumps({"info": {}, "packages": {}, "packages.conda": {}}).encode(),
            )
    base = installed_set(env, installed_records(env))
    target = set(base.lines)
    if drop_pypi:
        target = {line for line in target if not line.startswith("pypi ")}
    for file_name, data, index in add:
        add_package(members, file_name, data, index)
        import hashlib

        target.add(
            f"conda {index['name']}={index['version']}={index['build']} {hashlib.sha256(data).hexdigest()}"
        )
    from pixi_pack_ext.package_set import PackageSet

    new = PackageSet.of(target)
    metadata = _metadata(members)
    delta = {
        "version": "2",
        "platform": metadata["platform"],
        "delta": {
            "base": base.digest,
            "target": new.digest,
            "base-packages": base.sorted(),
            "target-packages": new.sorted(),
        },
    }
    set_data(members, "pixi-pack.json", json.dumps(delta).encode())
    return members


def test_delta_writing_through_a_symlink_of_the_environment(good_pack: Path, tmp_path: Path) -> None:
    out = _installed(good_pack, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "env" / "share" / "data").symlink_to(outside)  # the user's own link out of the environment
    name, data = make_package(
        index_json("evil"), [path_entry("share/data/pwned")], [file_member("share/data/pwned")], "conda"
    )
    members = _delta(good_pack, out / "env", [(name, data, index_json("evil"))])
    result, changed = _unpack(tmp_path, members)
    assert "symlink" in error_line(result)
    assert not changed and not any(outside.iterdir())


def test_delta_climbing_out_through_a_kept_symlink(good_pack: Path, tmp_path: Path) -> None:
    """A kept package's link to the prefix itself, and a new link that climbs one step above it."""
    out = _installed(good_pack, tmp_path)
    (out / "env" / "share" / "deep").mkdir()
    (out / "env" / "share" / "deep" / "top").symlink_to("../..")  # inside: the prefix itself
    index = index_json("evil")
    paths = [path_entry("up", softlink=True), path_entry("up/pwned")]
    from .hostile import link_member

    name, data = make_package(
        index, paths, [link_member("up", "share/deep/top/.."), file_member("up/pwned")], "conda"
    )
    members = _delta(good_pack, out / "env", [(name, data, index)])
    result, changed = _unpack(tmp_path, members)
    assert "symlink" in error_line(result)
    assert not changed and not (out / "pwned").exists()


def test_delta_removing_a_pypi_package_through_a_symlinked_folder(good_pack: Path, tmp_path: Path) -> None:
    """A removed PyPI package's RECORD names a file below a folder that is a link to outside."""
    out = _installed(good_pack, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep me\n")
    site = out / "env" / "lib" / "python3.11" / "site-packages"
    dist = site / "foo-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n")
    (dist / "RECORD").write_text("data/victim,,\nfoo-1.0.dist-info/METADATA,,\nfoo-1.0.dist-info/RECORD,,\n")
    (site / "data").symlink_to(outside)
    members = _delta(good_pack, out / "env", [], drop_pypi=True)
    result, changed = _unpack(tmp_path, members)
    assert result.returncode == 0, result.stderr.decode()
    assert (outside / "victim").read_text() == "keep me\n"
    assert not changed and not dist.exists()


def _plant_journal(folder: Path, snapshot_data: object) -> None:
    folder.mkdir()
    (folder / "owner.pid").write_text(f"999999999 {os.readlink('/proc/self/ns/pid')}\n")  # a dead run
    (folder / "files").mkdir()
    (folder / "snapshot.json").write_text(json.dumps(snapshot_data))
    (folder / "COMPLETE").write_text("")


@pytest.mark.parametrize("how", ["outside-paths", "symlinked", "malformed"])
def test_a_planted_journal_is_refused(good_pack: Path, tmp_path: Path, how: str) -> None:
    """A journal left next to the environment is data: it may not name paths outside it."""
    out = _installed(good_pack, tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    name, data = make_package(
        index_json("extra"), [path_entry("share/extra")], [file_member("share/extra")], "conda"
    )
    members = _delta(good_pack, out / "env", [(name, data, index_json("extra"))])
    evil = {"folders": [], "files": {}, "outside": {}, "all-outside": [str(victim)]}
    journal = out / ".env.pixi-unpack-journal"
    if how == "outside-paths":
        _plant_journal(journal, evil)
    elif how == "symlinked":
        _plant_journal(tmp_path / "elsewhere", evil)
        journal.symlink_to(tmp_path / "elsewhere")
    else:
        _plant_journal(journal, {"folders": "x"})
    env_before = snapshot(out / "env")
    result, changed = _unpack(tmp_path, members)
    assert "journal" in error_line(result)
    assert victim.read_text() == "keep me\n"
    assert not changed and snapshot(out / "env") == env_before


def test_a_large_list_of_environments_is_read_whole(multi_pack: Path, tmp_path: Path) -> None:
    """A pixi-pack.json over 64 KiB (many environments and platforms) is not cut short, and one
    beyond the bound is refused in one line before anything is written."""
    members = _editable(multi_pack)
    data = _metadata(members)
    environments = data["environments"]
    assert isinstance(environments, dict)
    for i in range(40):
        environments[f"pad-{i}"] = {
            "linux-64": {"conda": [f"channel/linux-64/p{j}-1-0.conda" for j in range(100)]}
        }
    set_data(members, "pixi-pack.json", json.dumps(data).encode())
    assert len(find(members, "pixi-pack.json").data or b"") > 1 << 17
    result, changed = _unpack(tmp_path, members, "--environment", "prod")
    assert result.returncode == 0, result.stderr.decode()
    assert (tmp_path / "run/out/env/conda-meta").is_dir() and not changed

    set_data(members, "pixi-pack.json", b'{"version": "2", "pad": "' + b"x" * (64 << 20) + b'"}')
    result, changed = _unpack(tmp_path, members, "-e", "other")
    assert "pixi-pack.json" in error_line(result)
    assert not changed and not (tmp_path / "run/out/other").exists()


def test_delta_removing_a_record_that_names_files_outside(good_pack: Path, tmp_path: Path) -> None:
    """An installed record (planted, or shipped by an earlier pack) whose files leave the prefix:
    the delta that removes its package must not unlink them."""
    out = _installed(good_pack, tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    meta = out / "env" / "conda-meta"
    record = json.loads(next(meta.glob("*.json")).read_text())
    record.update(name="fake", version="1", build="0", fn="fake-1-0.conda", sha256="0" * 64)
    record["files"] = ["../../../victim"]
    record["paths_data"] = {
        "paths_version": 1,
        "paths": [{"_path": "../../../victim", "path_type": "hardlink"}],
    }
    (meta / "fake-1-0.json").write_text(json.dumps(record))
    members = _delta(good_pack, out / "env", [])
    delta = json.loads(find(members, "pixi-pack.json").data or b"")
    from pixi_pack_ext.package_set import PackageSet

    target = PackageSet.of(
        [line for line in delta["delta"]["target-packages"] if not line.startswith("conda fake=")]
    )
    delta["delta"].update({"target": target.digest, "target-packages": target.sorted()})
    set_data(members, "pixi-pack.json", json.dumps(delta).encode())
    result, changed = _unpack(tmp_path, members)
    assert victim.read_text() == "keep me\n"
    assert "fake" in error_line(result)
    assert not changed


def test_a_package_cannot_plant_a_record_in_conda_meta(good_pack: Path, tmp_path: Path) -> None:
    """A package shipping ``conda-meta/*.json`` would plant a record whose files a later delta
    unlinks; the update refuses it."""
    out = _installed(good_pack, tmp_path)
    record = json.dumps({"name": "planted", "version": "1", "build": "0", "files": ["../../../x"]}).encode()
    index = index_json("planter")
    name, data = make_package(
        index,
        [path_entry("conda-meta/planted-1-0.json", record)],
        [file_member("conda-meta/planted-1-0.json", record)],
        "conda",
    )
    members = _delta(good_pack, out / "env", [(name, data, index)])
    env_before = snapshot(out / "env")
    result, changed = _unpack(tmp_path, members)
    assert "conda-meta" in error_line(result)
    assert not changed and snapshot(out / "env") == env_before


def test_an_environment_listing_one_wheel_twice(multi_pack: Path, tmp_path: Path) -> None:
    members = _editable(multi_pack)
    wheel = "pypi/foo-1.0-py3-none-any.whl"
    members.append(file_member(wheel, b"not really a wheel"))
    data = _metadata(members)
    environments = data["environments"]
    assert isinstance(environments, dict)
    environments["prod"]["linux-64"]["pypi"] = [wheel, wheel.removeprefix("pypi/")]
    set_data(members, "pixi-pack.json", json.dumps(data).encode())
    result, changed = _unpack(tmp_path, members, "--environment", "prod")
    line = error_line(result)
    assert "foo-1.0-py3-none-any.whl" in line
    assert not changed and not (tmp_path / "run" / "out").exists()


def test_delta_shipping_a_second_version_of_a_kept_package(good_pack: Path, tmp_path: Path) -> None:
    """The target names hello-bin twice (the kept one and a shipped one): one package per name."""
    out = _installed(good_pack, tmp_path)
    kept = next(r for r in installed_records(out / "env") if r.name.normalized == "hello-bin")
    index = index_json("hello-bin", version="9.9", subdir=kept.subdir)
    name, data = make_package(index, [path_entry("bin/hello")], [file_member("bin/hello")], "conda")
    members = _delta(good_pack, out / "env", [(name, data, index)])
    env_before = snapshot(out / "env")
    result, changed = _unpack(tmp_path, members)
    assert "hello-bin" in error_line(result)
    assert not changed and snapshot(out / "env") == env_before


@pytest.mark.parametrize(
    "listed",
    [
        ["../../../../etc/passwd"],
        ["channel/../pixi-pack.json"],
        ["/etc/passwd"],
        ["channel/linux-64/\u0000.conda"],
    ],
)
def test_an_environment_listing_files_outside_the_channel(
    multi_pack: Path, tmp_path: Path, listed: list[str]
) -> None:
    members = _editable(multi_pack)
    data = _metadata(members)
    environments = data["environments"]
    assert isinstance(environments, dict)
    environments["prod"]["linux-64"]["conda"] = listed
    environments["prod"]["linux-64"]["pypi"] = [f"pypi/{listed[0]}"]
    set_data(members, "pixi-pack.json", json.dumps(data).encode())
    result, changed = _unpack(tmp_path, members, "--environment", "prod")
    assert "pixi-pack.json" in error_line(result)
    assert not changed and not (tmp_path / "run" / "out").exists()
