"""conda-meta after ``pixi-unpack`` is what an install from the lock writes.

The reference is ``rattler.install`` of the lock's own records from their original URLs (the test
world serves them over HTTP), into the same path, so prefix-dependent fields match too. Fields that
must differ are the ones naming the package cache an install used: rattler's user cache for the
reference, a temporary one for the unpack (removed afterwards, so left out):
``extracted_package_dir``, ``package_tarball_full_path``, and ``link``'s ``source`` (that folder;
the link type stays). Every other field, ``url`` and ``channel`` included, must be equal.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import rattler
from conftest import needs_linux64, pack_prod, run

from pixi_pack_ext.unpack.conda_meta import CACHE_FIELDS, LINK_FIELD

pytestmark = needs_linux64


def conda_meta(prefix: Path) -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((prefix / "conda-meta").glob("*.json"))}


def lock_records(workspace: Path, environment: str, platform: str) -> list[rattler.RepoDataRecord]:
    lock = rattler.LockFile.from_path(workspace / "pixi.lock")
    env = lock.environment(environment)
    assert env is not None
    packages = next(pkgs for lp, pkgs in env.packages_by_platform().items() if lp.name == platform)
    return [p.repo_data_record() for p in packages if isinstance(p, rattler.CondaLockedBinaryPackage)]


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def test_conda_meta_matches_an_install_from_the_lock(workspace: Path, tmp_path: Path) -> None:
    pack_prod(workspace, tmp_path / "env.tar")
    out = tmp_path / "out"
    run("pixi-unpack", tmp_path / "env.tar", "-o", out)
    prefix = out / "env"
    unpacked = conda_meta(prefix)

    # every path a record names exists (nothing points into the removed temporary folders)
    for name, record in unpacked.items():
        for text in strings({k: v for k, v in record.items() if k not in ("files", "paths_data")}):
            if text.startswith("/") or text.startswith("file://"):
                path = Path(text.removeprefix("file://"))
                assert path.exists(), f"{name} names {text}, which does not exist"

    shutil.rmtree(prefix)
    records = lock_records(workspace, "prod", "linux-64")
    asyncio.run(
        rattler.install(
            records,
            target_prefix=prefix,
            cache_dir=tmp_path / "rattler-cache",
            platform=rattler.Subdir("linux-64"),
            execute_link_scripts=False,
            show_progress=False,
        )
    )
    reference = conda_meta(prefix)

    assert sorted(unpacked) == sorted(reference)
    for name, expected in reference.items():
        got = unpacked[name]
        assert expected["url"].startswith("http://127.0.0.1:"), expected["url"]
        for key in sorted(set(expected) | set(got)):
            if key in CACHE_FIELDS:
                assert key not in got, f"{name}: {key} names the removed package cache"
                continue
            if key == LINK_FIELD:  # how it was linked stays (a copy from a cache in RAM), not the folder
                assert got[key].keys() == expected[key].keys() and got[key]["source"] == "", got[key]
                assert got[key]["type"] in (1, 2, 3), f"{name}: {got[key]}"  # hard link, soft link, copy
                continue
            assert got.get(key) == expected.get(key), f"{name}: field '{key}' differs"


def test_repacking_the_unpacked_environment_gives_the_same_pack(workspace: Path, tmp_path: Path) -> None:
    """``pixi-pack --prefix`` of an unpacked environment reads its conda-meta: the original URLs
    bring the same packages (fetched from the channel) and the same repodata as the pack from the lock."""
    pack_prod(workspace, tmp_path / "first.tar")
    run("pixi-unpack", tmp_path / "first.tar", "-o", tmp_path / "out")
    run("pixi-pack", "--prefix", tmp_path / "out" / "env", "-o", tmp_path / "second.tar")
    import tarfile

    def repodata(pack: Path) -> dict[str, bytes]:
        with tarfile.open(pack) as tar:
            return {
                m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar.getmembers()
                if m.name.startswith("channel/") and m.isfile()
            }

    assert repodata(tmp_path / "second.tar") == repodata(tmp_path / "first.tar")


def test_an_invalid_origin_in_the_pack_is_refused(workspace: Path, tmp_path: Path) -> None:
    """The origin fields come from the pack: a value that is no URL is refused before anything is
    installed (it would be written into the environment's records)."""
    pack = tmp_path / "pack"
    pack_prod(workspace, pack, "--directory-only")
    (pack / "pixi-pack-manifest.json").unlink()  # an attacker drops it; else it refuses the edit first
    repodata_path = next(pack.glob("channel/linux-64/repodata.json"))
    repodata = json.loads(repodata_path.read_text())
    file_name, entry = next(iter(repodata["packages.conda"].items()))
    for bad in ("http://evil/\n# injected", {"nested": "object"}):
        entry["url"] = bad
        repodata_path.write_text(json.dumps(repodata))
        result = run("pixi-unpack", pack, "-o", tmp_path / "out", check=False)
        err = result.stderr.decode()
        assert result.returncode != 0 and "Traceback" not in err, err
        assert f"invalid 'url' for {file_name}" in err, err
        assert not (tmp_path / "out").exists()


def test_a_channel_named_without_a_url_comes_from_the_package_url(workspace: Path, tmp_path: Path) -> None:
    """Old conda records name a channel by its name only: ``--prefix`` takes the channel from the
    package's URL (``<channel>/<subdir>/<file>``) instead of failing, and the pack unpacks."""
    pack_prod(workspace, tmp_path / "first.tar")
    run("pixi-unpack", tmp_path / "first.tar", "-o", tmp_path / "out")
    for path in (tmp_path / "out" / "env" / "conda-meta").glob("*.json"):
        record = json.loads(path.read_text())
        record["channel"] = "demo-channel"
        path.write_text(json.dumps(record))
    run("pixi-pack", "--prefix", tmp_path / "out" / "env", "-o", tmp_path / "second.tar")
    run("pixi-unpack", tmp_path / "second.tar", "-o", tmp_path / "again")
    for name, record in conda_meta(tmp_path / "again" / "env").items():
        assert record["url"].startswith("http://127.0.0.1:"), name
        assert record["channel"] == record["url"].rsplit("/", 2)[0] + "/", name


def test_conda_pack_packs_the_unpacked_environment(workspace: Path, tmp_path: Path) -> None:
    """conda-pack reads conda-meta (every record's ``link`` among it): it packs an environment
    pixi-unpack made, and its archive, extracted elsewhere and ``conda-unpack``ed, runs there."""
    from conda_pack import pack as conda_pack

    pack_prod(workspace, tmp_path / "pack.tar")
    run("pixi-unpack", tmp_path / "pack.tar", "-o", tmp_path / "out")
    archive = tmp_path / "env.tar"
    conda_pack(prefix=str(tmp_path / "out" / "env"), output=str(archive), format="tar", verbose=False)
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.unpack_archive(archive, moved)
    records = sorted(p.name for p in (moved / "conda-meta").glob("*.json"))
    assert records == sorted(conda_meta(tmp_path / "out" / "env"))
    run(sys.executable, moved / "bin" / "conda-unpack")
    # a text file's prefix is rewritten (conda-pack finds prefixes in files itself when the package
    # cache an environment was linked from is gone, as after any pixi-unpack)
    script = run(moved / "bin" / "hello-script").stdout.decode().splitlines()
    assert script[0] == f"hello-script prefix={moved}"
