"""Synthetic benchmark worlds: channels of random-content packages, wheels, and a locked workspace.

Packages are made with ``rattler_build.assemble_package`` (no recipe, low compression: the content is
random, so it does not compress anyway). Each built package is cached under
``benchmarks/.work/packages/`` keyed by its parameters, so the 2 GB package of workload L is built
once; a world (channel + wheels + lock) is cached under ``benchmarks/.work/worlds/``.

The lock is written against the channel's ``file://`` URL with placeholders; ``World.workspace``
rewrites it for the port of the server that serves the world in this run.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import rattler

from pixi_pack_ext.hashing import hash_file
from pixi_pack_ext.testing.python import build_host_python_package, write_wheel
from pixi_pack_ext.testing.world import PypiEntry, write_lock

MiB = 1 << 20
WORK = Path(__file__).resolve().parent / ".work"
WHEELS_PLACEHOLDER = "http://wheels.invalid/wheels/"
CHANNEL_PLACEHOLDER = "@CHANNEL@"
#: Bumped when the way packages or worlds are made changes (invalidates the caches).
LAYOUT_VERSION = 2
#: Bumped when the way single packages are made changes.
PACKAGE_VERSION = 1
TIMESTAMP = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


@dataclass(frozen=True)
class PackageSpec:
    """One synthetic conda package: ``size`` bytes of random content spread over ``files`` files."""

    name: str
    size: int
    files: int = 1
    platform: str = "linux-64"
    archive: str = "conda"  # or "tar-bz2"


@dataclass(frozen=True)
class Workload:
    """A named set of packages and wheels (wheel sizes in bytes)."""

    name: str
    packages: tuple[PackageSpec, ...]
    wheels: tuple[int, ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(p.size for p in self.packages) + sum(self.wheels)

    @property
    def key(self) -> str:
        text = json.dumps([LAYOUT_VERSION, [asdict(p) for p in self.packages], list(self.wheels)])
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _log_uniform(rng: random.Random, count: int, low: int, high: int) -> list[float]:
    return [low * (high / low) ** rng.random() for _ in range(count)]


def _scaled(weights: list[float], total: int) -> list[int]:
    factor = total / sum(weights)
    return [max(64, int(w * factor)) for w in weights]


def _files_for(size: int) -> int:
    """Real packages have more files the bigger they are; cap it so the count stays modest."""
    return max(1, min(12, size // (4 * MiB) + 1))


def mixed(name: str, count: int, total: int, wheels: int, wheel_total: int, seed: int) -> Workload:
    """``count`` packages of log-uniform sizes (4 KiB .. 40 MiB before scaling) adding up to ``total``."""
    rng = random.Random(seed)
    sizes = _scaled(_log_uniform(rng, count, 4 << 10, 40 * MiB), total)
    packages = []
    for i, size in enumerate(sizes):
        platform = "noarch" if i % 10 == 3 else "linux-64"
        archive = "tar-bz2" if i % 20 == 7 and size < MiB else "conda"
        packages.append(PackageSpec(f"{name.lower()}-pkg{i:04d}", size, _files_for(size), platform, archive))
    wheel_sizes = tuple(_scaled(_log_uniform(rng, wheels, 16 << 10, 8 * MiB), wheel_total)) if wheels else ()
    return Workload(name, tuple(packages), wheel_sizes)


def large(name: str, big: int, small: int, wheels: int, seed: int) -> Workload:
    """One ``big`` package (8 files) plus ``small`` packages of 8 KiB .. 1 MiB."""
    rng = random.Random(seed)
    packages = [PackageSpec("large-big", big, 8)]
    for i, size in enumerate(_log_uniform(rng, small, 8 << 10, MiB)):
        packages.append(PackageSpec(f"large-small{i:03d}", int(size), _files_for(int(size))))
    wheel_sizes = tuple(int(s) for s in _log_uniform(rng, wheels, 16 << 10, 2 * MiB))
    return Workload(name, tuple(packages), wheel_sizes)


def tiny(name: str, count: int) -> Workload:
    """``count`` packages of two small files each."""
    return Workload(name, tuple(PackageSpec(f"{name.lower()}-t{i:05d}", 200, 2) for i in range(count)))


def workloads(quick: bool) -> dict[str, Workload]:
    """S, L, T200 and T1000 (scaled down in quick mode: S 50 MiB, L 200 MiB)."""
    if quick:
        s = mixed("S", 200, 50 * MiB, 20, 5 * MiB, seed=1)
        lg = large("L", 200 * MiB, 50, 20, seed=2)
    else:
        s = mixed("S", 200, 500 * MiB, 20, 40 * MiB, seed=1)
        lg = large("L", 2048 * MiB, 50, 20, seed=2)
    return {"S": s, "L": lg, "T200": tiny("T200", 200), "T1000": tiny("T1000", 1000)}


# --------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------


def _write_random(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 16 * MiB)
            f.write(os.urandom(n))
            left -= n


def build_package(spec: PackageSpec) -> Path:
    """The built package file for ``spec`` (from the cache when it was built before)."""
    from rattler_build import ArchiveType, assemble_package

    key = f"{spec.name}-{spec.size}-{spec.files}-{spec.platform}-{spec.archive}-v{PACKAGE_VERSION}"
    folder = WORK / "packages" / key
    done = folder / "DONE"
    if done.is_file():
        return folder / done.read_text().strip()
    shutil.rmtree(folder, ignore_errors=True)
    files = folder / "files"
    out = folder / "out"
    out.mkdir(parents=True)
    sizes = [spec.size // spec.files] * spec.files
    sizes[0] += spec.size - sum(sizes)
    for i, size in enumerate(sizes):
        _write_random(files / "share" / spec.name / f"data{i:02d}.bin", size)
    result = assemble_package(
        name=spec.name,
        version="1.0",
        target_platform="linux-64" if spec.platform == "noarch" else spec.platform,
        build_string="h0_0",
        output_dir=out,
        files_dir=files,
        noarch="generic" if spec.platform == "noarch" else None,
        compression_level=1,
        archive_type=ArchiveType.TarBz2 if spec.archive == "tar-bz2" else ArchiveType.Conda,
        timestamp=TIMESTAMP,
        detect_prefix=False,
    )
    shutil.rmtree(files)
    built = Path(result.path)
    final = folder / built.name
    built.rename(final)
    shutil.rmtree(out)
    done.write_text(built.name)
    return final


def build_wheel(directory: Path, index: int, size: int) -> Path:
    """A real (installable) pure-Python wheel holding ``size`` random bytes as package data."""
    name = f"benchwheel{index:02d}"
    return write_wheel(
        directory, name, "1.0", {f"{name}/__init__.py": b"", f"{name}/data.bin": os.urandom(size)}
    )


@dataclass(frozen=True)
class World:
    """A built workload on disk: ``serve/`` (channel/ and wheels/) and a lock template."""

    workload: Workload
    root: Path

    @property
    def serve(self) -> Path:
        return self.root / "serve"

    @property
    def channel(self) -> Path:
        return self.serve / "channel"

    def package_files(self) -> list[Path]:
        """Every file a pack of this world fetches (conda packages and wheels)."""
        found = [p for p in self.channel.rglob("*") if p.name.endswith((".conda", ".tar.bz2"))]
        return sorted(found) + sorted((self.serve / "wheels").glob("*.whl"))

    def workspace(self, target: Path, server_url: str) -> Path:
        """A workspace folder whose pixi.lock points at ``server_url`` (the world's ``serve/``)."""
        target.mkdir(parents=True, exist_ok=True)
        text = (self.root / "pixi.lock.in").read_text()
        text = text.replace(CHANNEL_PLACEHOLDER, server_url + "channel")
        text = text.replace(WHEELS_PLACEHOLDER, server_url + "wheels/")
        (target / "pixi.lock").write_text(text)
        (target / "pixi.toml").write_text(
            '[workspace]\nname = "bench"\nchannels = []\nplatforms = ["linux-64"]\n'
        )
        return target


def build_world(workload: Workload, log: Callable[[str], None] = print) -> World:
    """Build (or reuse) the world of ``workload``."""
    root = WORK / "worlds" / f"{workload.name}-{workload.key}"
    world = World(workload, root)
    if (root / "READY").is_file():
        return world
    log(
        f"building world {workload.name} ({len(workload.packages)} packages, {workload.total_bytes / MiB:.0f} MiB)"
    )
    shutil.rmtree(root, ignore_errors=True)
    channel = world.channel
    for sub in ("linux-64", "noarch"):
        (channel / sub).mkdir(parents=True)
    for spec in workload.packages:
        built = build_package(spec)
        os.link(built, channel / spec.platform / built.name)
    specs = sorted({p.name for p in workload.packages})
    if workload.wheels:
        # Wheels are installed into the environment's python: a conda python made from this host's.
        build_host_python_package(channel / "linux-64")
        specs.append("python")
    asyncio.run(rattler.index.index_fs(channel, write_zst=False, write_shards=False))

    wheels_dir = world.serve / "wheels"
    wheels_dir.mkdir(parents=True)
    entries = []
    for i, size in enumerate(workload.wheels):
        wheel = build_wheel(wheels_dir, i, size)
        name = wheel.name.split("-")[0]
        entries.append(
            PypiEntry(name, "1.0", WHEELS_PLACEHOLDER + wheel.name, hash_file(wheel, md5=False)[0])
        )

    lock = root / "pixi.lock"
    write_lock(lock, channel.as_uri(), {"default": specs}, ["linux-64"], pypi={"default": entries})
    text = lock.read_text().replace(channel.as_uri(), CHANNEL_PLACEHOLDER)
    text = text.replace(str(channel), CHANNEL_PLACEHOLDER)
    (root / "pixi.lock.in").write_text(text)
    lock.unlink()
    (root / "READY").write_text("")
    return world


def changed_world(world: World, log: Callable[[str], None] = print) -> World:
    """``world`` with its first small package at version 1.1 (other content, same size): the new
    side of the delta benchmark. Shares the world's files by hard links; cached like a world."""
    spec = next(p for p in world.workload.packages if p.name != "large-big")
    root = world.root.parent / f"{world.root.name}-changed"
    changed = World(world.workload, root)
    if (root / "READY").is_file():
        return changed
    log(f"building the changed world of {world.workload.name} ({spec.name} 1.1)")
    shutil.rmtree(root, ignore_errors=True)
    for path in world.serve.rglob("*"):
        if path.is_file() and path.name != "repodata.json":
            target = changed.serve / path.relative_to(world.serve)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
    from rattler_build import assemble_package

    files = root / "files"
    _write_random(files / "share" / spec.name / "data00.bin", spec.size)
    assemble_package(
        name=spec.name,
        version="1.1",
        target_platform="linux-64",
        build_string="h0_0",
        output_dir=changed.channel / spec.platform,
        files_dir=files,
        noarch="generic" if spec.platform == "noarch" else None,
        compression_level=1,
        timestamp=TIMESTAMP,
        detect_prefix=False,
    )
    shutil.rmtree(files)
    asyncio.run(rattler.index.index_fs(changed.channel, write_zst=False, write_shards=False))
    base_lock = (world.root / "pixi.lock.in").read_text()
    specs = sorted(
        {p.name for p in world.workload.packages} | ({"python"} if world.workload.wheels else set())
    )
    lock = root / "pixi.lock"
    entries = [
        PypiEntry(w.name.split("-")[0], "1.0", WHEELS_PLACEHOLDER + w.name, hash_file(w, md5=False)[0])
        for w in sorted((changed.serve / "wheels").glob("*.whl"))
    ]
    write_lock(lock, changed.channel.as_uri(), {"default": specs}, ["linux-64"], pypi={"default": entries})
    text = lock.read_text().replace(changed.channel.as_uri(), CHANNEL_PLACEHOLDER)
    text = text.replace(str(changed.channel), CHANNEL_PLACEHOLDER)
    assert text != base_lock, "the changed world's lock must differ from the world's"
    (root / "pixi.lock.in").write_text(text)
    lock.unlink()
    (root / "READY").write_text("")
    return changed
