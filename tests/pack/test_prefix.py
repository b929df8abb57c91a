"""``pixi-pack --prefix``: pack an environment that is already installed, with its channel down.

The environment is installed with rattler from a real lock; its channel server is then stopped, so
every package must come from a local package cache (conda's ``pkgs/``, ``RATTLER_CACHE_DIR``,
``--use-cache``). The result must be the very pack the lock gives.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import rattler
from conftest import make_workspace, run

from pixi_pack_ext.testing.python import write_wheel
from pixi_pack_ext.testing.world import ChannelServer

ENV = "prod"
PLATFORM = "linux-64"


def assert_same_pack(pack: Path, lock_pack: Path) -> None:
    """Both packs hold the same bytes, tar headers included, but for the SBOM (and the manifest's
    line for it): an installed environment does not know the lock's environment name, nor, once
    pixi-unpack installed it, the channel its packages came from."""
    from pixi_pack_ext.metadata import SEAL_FILES

    def read(path: Path) -> tuple[list[tuple[str, int, int]], dict[str, bytes]]:
        with tarfile.open(path) as tar:
            members = tar.getmembers()
            data = {m.name: tar.extractfile(m).read() for m in members if m.isfile()}  # type: ignore[union-attr]
        skipped = ("sbom.cdx.json", *SEAL_FILES)
        return [(m.name, m.size, m.mode) for m in members if m.name not in skipped], data

    (layout, files), (lock_layout, lock_files) = read(pack), read(lock_pack)
    assert layout == lock_layout
    for name in files.keys() - {"sbom.cdx.json", *SEAL_FILES}:
        assert files[name] == lock_files[name], name
    sbom, lock_sbom = json.loads(files["sbom.cdx.json"]), json.loads(lock_files["sbom.cdx.json"])

    def packages(bom: dict[str, list[dict[str, object]]]) -> list[tuple[object, ...]]:
        return [(c["name"], c["version"], c["hashes"], c.get("licenses")) for c in bom["components"]]

    assert packages(sbom) == packages(lock_sbom)
    manifest, lock_manifest = json.loads(files[SEAL_FILES[0]]), json.loads(lock_files[SEAL_FILES[0]])
    manifest["files"].pop("sbom.cdx.json")
    lock_manifest["files"].pop("sbom.cdx.json")
    assert manifest == lock_manifest


@dataclass(frozen=True)
class InstalledWorld:
    """A lock, the pack made from it, and the environment rattler installed from it (channel now down)."""

    lock_pack: Path
    #: Filled by the lock pack: ``<subdir>/<file>`` for every package.
    use_cache: Path
    #: Every package archive, flat, as conda keeps them in ``pkgs/``.
    archives: Path
    #: Installed by rattler; its package cache holds only extracted folders.
    prefix: Path


@pytest.fixture(scope="module")
def installed(channel_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> InstalledWorld:
    root = tmp_path_factory.mktemp("prefix-world")
    server = ChannelServer(channel_dir).start()
    try:
        workspace = make_workspace(root / "ws", server.url)
        lock_pack = root / "lock.tar"
        use_cache = root / "use-cache"
        run("pixi-pack", workspace, "-e", ENV, "-p", PLATFORM, "-o", lock_pack, "--use-cache", use_cache)
        env = rattler.LockFile.from_path(workspace / "pixi.lock").environment(ENV)
        assert env is not None
        records = next(
            [p.repo_data_record() for p in packages]
            for platform, packages in env.packages_by_platform().items()
            if platform.name == PLATFORM
        )
        prefix = root / "rattler-env"
        asyncio.run(
            rattler.install(
                records,
                target_prefix=prefix,
                cache_dir=root / "rattler-cache",
                platform=rattler.Subdir(PLATFORM),
            )
        )
    finally:
        server.stop()
    archives = root / "archives"
    archives.mkdir()
    for package in use_cache.glob("*/*"):
        if package.name.endswith((".conda", ".tar.bz2")):
            shutil.copy(package, archives / package.name)
    assert not list((root / "rattler-cache").glob("*.conda")), "rattler's cache keeps archives now"
    return InstalledWorld(lock_pack, use_cache, archives, prefix)


def isolated(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment where no package cache of this machine can answer."""
    return {
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
        "RATTLER_CACHE_DIR": "",
        "PIXI_CACHE_DIR": "",
        "CONDA_PKGS_DIRS": "",
        **extra,
    }


def conda_root(world: InstalledWorld, tmp_path: Path, with_pkgs: bool = True) -> Path:
    """A copy of the environment laid out as conda does: ``<root>/envs/demo`` and ``<root>/pkgs``."""
    root = tmp_path / "conda"
    prefix = root / "envs" / "demo"
    shutil.copytree(world.prefix, prefix, symlinks=True)
    if with_pkgs:
        shutil.copytree(world.archives, root / "pkgs")
    return prefix


def error_line(result: object, exit_code: int = 1) -> str:
    stderr = result.stderr.decode()  # type: ignore[attr-defined]
    assert result.returncode == exit_code, stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_conda_style_prefix_packs_identically_to_its_lock(installed: InstalledWorld, tmp_path: Path) -> None:
    prefix = conda_root(installed, tmp_path)
    out = tmp_path / "prefix.tar"
    result = run("pixi-pack", "--prefix", prefix, "-o", out, env=isolated(tmp_path))
    assert_same_pack(out, installed.lock_pack)
    assert "changed since installation" not in result.stderr.decode()
    assert f"packed the environment at '{prefix}' into {out}" in result.stderr.decode()


@pytest.mark.parametrize("where", ["use-cache", "RATTLER_CACHE_DIR"])
def test_rattler_prefix_takes_archives_from_other_caches(
    installed: InstalledWorld, tmp_path: Path, where: str
) -> None:
    out = tmp_path / "prefix.tar"
    if where == "use-cache":
        cache = tmp_path / "cache"
        shutil.copytree(installed.use_cache, cache)
        run(
            "pixi-pack", "--prefix", installed.prefix, "-o", out, "--use-cache", cache, env=isolated(tmp_path)
        )
    else:
        shutil.copytree(installed.archives, tmp_path / "rattler" / "pkgs")
        env = isolated(tmp_path, RATTLER_CACHE_DIR=str(tmp_path / "rattler"))
        run("pixi-pack", "--prefix", installed.prefix, "-o", out, env=env)
    assert_same_pack(out, installed.lock_pack)


def test_edited_files_are_reported_and_originals_packed(installed: InstalledWorld, tmp_path: Path) -> None:
    prefix = conda_root(installed, tmp_path)
    (prefix / "share" / "greeting" / "message.txt").write_text("edited by hand\n")
    (prefix / "share" / "libgreet" / "platform.txt").unlink()
    out = tmp_path / "prefix.tar"
    result = run("pixi-pack", "--prefix", prefix, "-o", out, env=isolated(tmp_path))
    stderr = " ".join(result.stderr.decode().split())
    assert "2 file(s) of" in stderr and "changed since installation" in stderr
    assert "share/greeting/message.txt (greeting-data)" in stderr
    assert "share/libgreet/platform.txt (libgreet, missing)" in stderr
    assert "bin/hello" not in stderr  # rewritten at install (prefix placeholder), not edited
    assert_same_pack(out, installed.lock_pack)


def test_package_found_nowhere_is_a_clean_error(installed: InstalledWorld, tmp_path: Path) -> None:
    prefix = conda_root(installed, tmp_path)
    archive = next((prefix.parent.parent / "pkgs").glob("libgreet-2.1-*.conda"))
    archive.unlink()
    # Its channel still answers, but no longer has the file.
    (tmp_path / "gone" / "linux-64").mkdir(parents=True)
    with ChannelServer(tmp_path / "gone") as gone:
        record_path = next((prefix / "conda-meta").glob("libgreet-*.json"))
        record = json.loads(record_path.read_text())
        record["url"] = f"{gone.url}linux-64/{record['fn']}"
        record_path.write_text(json.dumps(record))
        for path in (prefix / "conda-meta").glob("*.json"):  # no cache holds an extracted folder either
            other = json.loads(path.read_text())
            other["extracted_package_dir"] = str(tmp_path / "no-longer-cached" / other["name"])
            path.write_text(json.dumps(other))
        out = tmp_path / "prefix.tar"
        result = run("pixi-pack", "--prefix", prefix, "-o", out, env=isolated(tmp_path), check=False)
    line = error_line(result)
    assert "HTTP 404" in line and f"libgreet=2.1={archive.name.split('-')[-1].removesuffix('.conda')}" in line
    assert "no verified archive or extracted folder of libgreet" in line and "--use-cache" in line
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "xdg-cache") == ["conda", "gone"]
    # the user's cache holds at most the tool's start-up cache, never a download
    cached = (
        [p for p in (tmp_path / "xdg-cache").rglob("*") if p.is_file()]
        if (tmp_path / "xdg-cache").exists()
        else []
    )
    assert all(p.relative_to(tmp_path / "xdg-cache").parts[0] == "pixi-pack-ext" for p in cached), cached
    assert not [p for p in cached if p.name.endswith((".conda", ".tar.bz2"))], cached


def _tree(root: Path) -> dict[str, bytes | str]:
    """Every file (its bytes) and link (its target) under ``root``, but conda-meta."""
    out: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("conda-meta") or (path.is_dir() and not path.is_symlink()):
            continue
        out[rel] = str(path.readlink()) if path.is_symlink() else path.read_bytes()
    return out


@pytest.mark.skipif(sys.platform != "linux", reason="the packages are built for linux-64")
def test_pixi_prefix_without_network_is_rebuilt_from_extracted_folders(
    installed: InstalledWorld, tmp_path: Path
) -> None:
    """rattler's cache holds only extracted folders and the channel is down: each package is rebuilt
    as a .conda, named in one warning; the pack records the rebuilt files' hashes and keeps the
    original ones; unpacked, it holds the same files as the pack from the lock."""
    out = tmp_path / "prefix.tar"
    result = run("pixi-pack", "--prefix", installed.prefix, "-o", out, env=isolated(tmp_path))
    err = " ".join(result.stderr.decode().split())
    assert err.count("rebuilt 4 package(s)") == 1, err
    for name in ("activate-demo", "greeting-data", "hello-bin", "libgreet"):
        assert f"{name}=" in err
    with tarfile.open(installed.lock_pack) as tar:
        lock_repodata = {
            m.name: json.loads(tar.extractfile(m).read())  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.name.endswith("repodata.json")
        }
    extracted = tmp_path / "pack"
    with tarfile.open(out) as tar:
        tar.extractall(extracted, filter="data")
    for name, original in lock_repodata.items():
        repodata = json.loads((extracted / name).read_text())
        original_entries = {**original["packages"], **original["packages.conda"]}
        assert repodata["packages"] == {}  # every package is rebuilt as .conda
        for fn, entry in original_entries.items():
            conda_fn = fn.removesuffix(".tar.bz2").removesuffix(".conda") + ".conda"
            rebuilt = repodata["packages.conda"][conda_fn]
            data = (extracted / name).parent.joinpath(conda_fn).read_bytes()
            assert rebuilt["sha256"] == hashlib.sha256(data).hexdigest() != entry["sha256"]
            assert rebuilt["size"] == len(data)
            assert rebuilt["rebuilt_from"] == {
                "fn": fn,
                "sha256": entry["sha256"],
                "md5": entry["md5"],
                "size": entry["size"],
            }
            same = {k: v for k, v in rebuilt.items() if k not in ("sha256", "md5", "size", "rebuilt_from")}
            assert same == {k: v for k, v in entry.items() if k not in ("sha256", "md5", "size")}
    trees = []
    for pack in (installed.lock_pack, out):  # one after the other at one path: prefixes match too
        run("pixi-unpack", pack, "-o", tmp_path / "unpacked")
        trees.append(_tree(tmp_path / "unpacked" / "env"))
        shutil.rmtree(tmp_path / "unpacked")
    assert trees[0] == trees[1] and "bin/hello" in trees[0]


def test_an_edited_extracted_folder_is_not_rebuilt_from(installed: InstalledWorld, tmp_path: Path) -> None:
    """A file of a cache's extracted folder that no longer matches its package's paths.json stops
    the rebuild with one error naming the folder: the pack never holds edited files."""
    prefix = tmp_path / "env"
    shutil.copytree(installed.prefix, prefix, symlinks=True)
    cache = tmp_path / "cache"
    for path in (prefix / "conda-meta").glob("*.json"):
        record = json.loads(path.read_text())
        source = Path(record["extracted_package_dir"])
        shutil.copytree(source, cache / source.name, symlinks=True)
        record["extracted_package_dir"] = str(cache / source.name)
        path.write_text(json.dumps(record))
    edited = next(cache.glob("greeting-data-*")) / "share" / "greeting" / "message.txt"
    edited.write_text("edited in the cache\n")
    result = run(
        "pixi-pack", "--prefix", prefix, "-o", tmp_path / "out.tar", env=isolated(tmp_path), check=False
    )
    stderr = result.stderr.decode()
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and "Traceback" not in stderr and len(lines) == 1, stderr
    assert "cannot rebuild greeting-data-" in lines[0] and str(edited.parents[2]) in lines[0], lines[0]
    assert "share/greeting/message.txt' does not match the sha256" in lines[0], lines[0]
    assert not (tmp_path / "out.tar").exists()


def test_archive_with_wrong_bytes_is_not_used(installed: InstalledWorld, tmp_path: Path) -> None:
    prefix = conda_root(installed, tmp_path)
    next((prefix.parent.parent / "pkgs").glob("libgreet-2.1-*.conda")).write_bytes(b"not the package")
    cache = tmp_path / "cache"
    shutil.copytree(installed.use_cache, cache)
    out = tmp_path / "prefix.tar"
    run("pixi-pack", "--prefix", prefix, "-o", out, "--use-cache", cache, env=isolated(tmp_path))
    assert_same_pack(out, installed.lock_pack)


def _broken_record(prefix: Path, change: str) -> None:
    record_path = next((prefix / "conda-meta").glob("libgreet-*.json"))
    record = json.loads(record_path.read_text())
    if change == "no-url":
        del record["url"]
    else:
        del record["sha256"], record["md5"]
    record_path.write_text(json.dumps(record))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "does not exist"),
        ("plain-folder", "is not a conda environment (it has no conda-meta folder)"),
        ("empty-conda-meta", "has no installed conda packages"),
        ("no-url", "has no URL"),
        ("no-hash", "has no sha256 or md5"),
    ],
)
def test_what_cannot_be_packed_is_a_clean_error(
    installed: InstalledWorld, tmp_path: Path, case: str, message: str
) -> None:
    prefix = tmp_path / "env"
    if case == "plain-folder":
        (prefix / "bin").mkdir(parents=True)
    elif case == "empty-conda-meta":
        (prefix / "conda-meta").mkdir(parents=True)
        (prefix / "conda-meta" / "history").write_text("")
    elif case in ("no-url", "no-hash"):
        shutil.copytree(installed.prefix, prefix, symlinks=True)
        _broken_record(prefix, case)
    out = tmp_path / "out.tar"
    line = error_line(run("pixi-pack", "--prefix", prefix, "-o", out, env=isolated(tmp_path), check=False))
    assert message in line
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pixi-pack")]


# --------------------------------------------------------------------------------------------------
# PyPI packages installed into the prefix
# --------------------------------------------------------------------------------------------------


def build_wheel(folder: Path, name: str = "tinywheel", version: str = "1.0") -> Path:
    """A real (pure-python) wheel, written the way wheel builders write it."""
    return write_wheel(folder, name, version, {f"{name}/__init__.py": b"GREETING = 'hello from a wheel'\n"})


def pip_install(wheel: Path, prefix: Path) -> None:
    """Install a wheel into the prefix's site-packages as pip does (INSTALLER says pip)."""
    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.sources import WheelFile

    site = prefix / "lib" / "python3.12" / "site-packages"
    scheme = {key: str(site) for key in ("purelib", "platlib")}
    scheme |= {"scripts": str(prefix / "bin"), "headers": str(prefix / "include"), "data": str(prefix)}
    destination = SchemeDictionaryDestination(scheme, interpreter=sys.executable, script_kind="posix")
    with WheelFile.open(wheel) as source:
        install(source, destination, {"INSTALLER": b"pip\n"})


def test_pypi_wheel_from_wheel_dir_is_packed(installed: InstalledWorld, tmp_path: Path) -> None:
    prefix = conda_root(installed, tmp_path)
    wheel = build_wheel(tmp_path / "wheels")
    pip_install(wheel, prefix)
    build_wheel(tmp_path / "other", version="2.0")  # same name, other release: never chosen
    out = tmp_path / "prefix.tar"
    run(
        "pixi-pack", "--prefix", prefix, "-o", out, "--wheel-dir", tmp_path / "other",
        "--wheel-dir", tmp_path / "wheels", env=isolated(tmp_path),
    )  # fmt: skip
    with tarfile.open(out) as tar:
        packed = tar.extractfile("pypi/tinywheel-1.0-py3-none-any.whl").read()  # type: ignore[union-attr]
        env_yml = tar.extractfile("environment.yml").read().decode()  # type: ignore[union-attr]
    assert packed == wheel.read_bytes()
    assert "    - tinywheel==1.0\n" in env_yml


def test_pypi_package_without_wheel_fails_or_is_skipped(installed: InstalledWorld, tmp_path: Path) -> None:
    prefix = conda_root(installed, tmp_path)
    pip_install(build_wheel(tmp_path / "built"), prefix)
    out = tmp_path / "prefix.tar"
    line = error_line(run("pixi-pack", "--prefix", prefix, "-o", out, env=isolated(tmp_path), check=False))
    assert "tinywheel==1.0" in line and "--wheel-dir" in line and "--ignore-pypi-non-wheel" in line
    assert not out.exists()

    result = run(
        "pixi-pack", "--prefix", prefix, "-o", out, "--ignore-pypi-non-wheel", env=isolated(tmp_path)
    )
    assert "skipping PyPI package(s)" in result.stderr.decode() and "tinywheel==1.0" in result.stderr.decode()
    assert_same_pack(out, installed.lock_pack)


def test_wheel_dir_needs_prefix(workspace: Path, tmp_path: Path) -> None:
    result = run("pixi-pack", workspace, "--wheel-dir", tmp_path, "-o", tmp_path / "out.tar", check=False)
    assert "--wheel-dir only applies with --prefix" in error_line(result, exit_code=2)


def test_records_written_by_conda_point_at_their_archives(installed: InstalledWorld, tmp_path: Path) -> None:
    """conda's records carry extra keys and the archive's own path; the archives may live anywhere."""
    prefix = tmp_path / "env"
    shutil.copytree(installed.prefix, prefix, symlinks=True)
    archives = shutil.copytree(installed.archives, tmp_path / "elsewhere")
    for record_path in (prefix / "conda-meta").glob("*.json"):
        record = json.loads(record_path.read_text())
        subdir_channel = record["channel"].rstrip("/") + "/" + record["subdir"]
        record.update(
            channel=subdir_channel,
            auth=None,
            requested_spec="",
            package_tarball_full_path=str(archives / record["fn"]),
            extracted_package_dir=str(tmp_path / "extracted" / record["name"]),
            link={"source": str(tmp_path / "extracted" / record["name"]), "type": 1},
        )
        record_path.write_text(json.dumps(record, indent=2))
    out = tmp_path / "prefix.tar"
    run("pixi-pack", "--prefix", prefix, "-o", out, env=isolated(tmp_path))
    assert_same_pack(out, installed.lock_pack)


def test_prefix_with_lock_options_is_refused(tmp_path: Path) -> None:
    """-e and MANIFEST_PATH choose from a lock; with --prefix they would be silently ignored."""
    for extra in (["-e", "prod"], [str(tmp_path)]):
        result = run("pixi-pack", "--prefix", tmp_path, *extra, "-o", tmp_path / "x.tar", check=False)
        err = result.stderr.decode()
        assert result.returncode == 2 and "--prefix packs an installed environment" in err
        assert not (tmp_path / "x.tar").exists()
