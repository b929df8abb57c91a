"""A real conda world, made offline: build packages, index them, serve them, lock a workspace.

No conda channel is needed: recipes are built with py-rattler-build, indexed with rattler, served
over HTTP on 127.0.0.1, solved with rattler and written as a real ``pixi.lock``. The example
workspace, the test suite, the benchmarks and plugin authors all use this module (``pip install
pixi-pack-ext[testing]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import rattler
from rattler import Channel, Gateway, LockChannel, LockFile, LockPlatform

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: Platforms a recipe builds for when it is not noarch and names none itself.
DEFAULT_PLATFORMS = ("linux-64",)


def recipe_platforms(recipe: Any) -> list[str]:
    """Which target platforms to build a parsed recipe for."""
    data = recipe.to_dict()
    build = data.get("build") or {}
    if build.get("noarch"):
        return ["noarch"]
    extra = (data.get("extra") or {}).get("platforms")
    return list(extra) if extra else list(DEFAULT_PLATFORMS)


def build_recipe(recipe_path: Path, channel_dir: Path, platforms: Sequence[str] | None = None) -> list[Path]:
    """Build one recipe file into ``channel_dir`` for each of its platforms; returns the package files.

    rattler-build writes the recipe it parses into its recipe folder: it builds from a private copy
    of that folder, so a recipe in the source tree (``examples/``) is never written, and two runs
    building the same recipe at once cannot truncate it for each other."""
    from rattler_build import PlatformConfig, RenderConfig, Stage0Recipe, ToolConfiguration

    channel_dir.mkdir(parents=True, exist_ok=True)
    text = recipe_path.read_text()
    built: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="pixi-pack-recipe-") as scratch:
        recipe_dir = Path(scratch) / recipe_path.parent.name
        shutil.copytree(recipe_path.parent, recipe_dir, symlinks=True)
        recipe = Stage0Recipe.from_yaml(text, recipe_dir=recipe_dir)
        data = recipe.to_dict()
        fmt = (data.get("extra") or {}).get("package-format", "conda")
        for platform in platforms or recipe_platforms(recipe):
            target = "linux-64" if platform == "noarch" else platform
            results = Stage0Recipe.from_yaml(text, recipe_dir=recipe_dir).run_build(
                tool_config=ToolConfiguration(test_strategy="skip"),
                output_dir=channel_dir,
                channels=[channel_dir.as_uri()],
                package_format=fmt,
                no_build_id=True,
                render_config=RenderConfig(platform=PlatformConfig(target_platform=target)),
            )
            for result in results:
                built.extend(Path(p) for p in result.packages)
    return built


def clean_build_leftovers(channel_dir: Path) -> None:
    """Remove rattler-build's work folders and logs so only the channel remains."""
    for name in ("bld", ".tmp", "src_cache", "rattler-build-log.txt", ".condapackageignore"):
        target = channel_dir / name
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists():
            target.unlink()


def index_channel(channel_dir: Path) -> None:
    """Write repodata.json for every subdir (noarch always)."""
    (channel_dir / "noarch").mkdir(parents=True, exist_ok=True)
    asyncio.run(rattler.index.index_fs(channel_dir, write_zst=False, write_shards=False))


def build_channel(recipe_dir: Path, channel_dir: Path) -> list[Path]:
    """Build every ``*/recipe.yaml`` (or ``*.yaml``) under ``recipe_dir`` and index the channel."""
    recipes = sorted(recipe_dir.glob("*/recipe.yaml")) + sorted(recipe_dir.glob("*.yaml"))
    built: list[Path] = []
    for recipe in recipes:
        built.extend(build_recipe(recipe, channel_dir))
    clean_build_leftovers(channel_dir)
    index_channel(channel_dir)
    return built


# --------------------------------------------------------------------------------------------------
# Serving
# --------------------------------------------------------------------------------------------------


@dataclass
class RequestLog:
    """What a test server saw: paths requested, and the most requests it served at once."""

    paths: list[str] = field(default_factory=list)
    active: int = 0
    max_active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, suffix: str = "") -> int:
        with self.lock:
            return sum(1 for p in self.paths if p.endswith(suffix))


class _QuietHandler(SimpleHTTPRequestHandler):
    request_log: RequestLog

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        log = self.request_log
        with log.lock:
            log.paths.append(self.path)
            log.active += 1
            log.max_active = max(log.max_active, log.active)
        try:
            super().do_GET()
        finally:
            with log.lock:
                log.active -= 1


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog of 5 drops connections when a client opens dozens at once
    # (the kernel then retries after a second), which makes concurrent downloads look slow.
    request_queue_size = 1024


class ChannelServer:
    """A real HTTP server for a folder on 127.0.0.1 (a random free port), counting its requests."""

    def __init__(self, directory: Path, handler: type[SimpleHTTPRequestHandler] | None = None) -> None:
        self.directory = directory
        self.log = RequestLog()
        base = handler or _QuietHandler
        handler_class = type("Handler", (base,), {"request_log": self.log})
        self._server = _Server(("127.0.0.1", 0), partial(handler_class, directory=str(directory)))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> ChannelServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ChannelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------
# Locking
# --------------------------------------------------------------------------------------------------


@dataclass
class WorkspaceSpec:
    """What a pixi.toml asks for: platforms, and per environment its conda specs."""

    platforms: list[str]
    environments: dict[str, list[str]]
    pypi: dict[str, dict[str, str]] = field(default_factory=dict)


def _specs(table: dict[str, Any]) -> list[str]:
    specs = []
    for name, value in table.items():
        version = value if isinstance(value, str) else (value or {}).get("version", "*")
        specs.append(name if version in ("*", "") else f"{name} {version}")
    return specs


def read_workspace(manifest: Path) -> WorkspaceSpec:
    """The subset of a pixi.toml the test world understands: dependencies, features, environments."""
    data = tomllib.loads(manifest.read_text())
    workspace = data.get("workspace") or data.get("project") or {}
    base = _specs(data.get("dependencies", {}))
    features = data.get("feature", {})
    environments: dict[str, list[str]] = {"default": base}
    for env_name, value in (data.get("environments") or {}).items():
        names = value if isinstance(value, list) else value.get("features", [])
        specs = list(base)
        for feature in names:
            specs += _specs(features.get(feature, {}).get("dependencies", {}))
        environments[env_name] = specs
    return WorkspaceSpec(platforms=list(workspace.get("platforms", ["linux-64"])), environments=environments)


def generic_virtual_packages(entries: Sequence[str]) -> list[rattler.GenericVirtualPackage]:
    """``["__glibc=2.28", "__cuda=12"]`` (as locks write them) as rattler's virtual packages."""
    result = []
    for entry in entries:
        name, _, rest = entry.partition("=")
        version, _, build = rest.partition("=")
        result.append(
            rattler.GenericVirtualPackage(
                rattler.PackageName(name), rattler.Version(version or "0"), rattler.BuildString(build or "0")
            )
        )
    return result


def solve(
    channel_url: str,
    specs: Sequence[str],
    platform: str,
    cache_dir: Path,
    virtual_packages: Sequence[str] = (),
) -> list[rattler.RepoDataRecord]:
    """Solve ``specs`` for ``platform`` against one channel, assuming only ``virtual_packages``."""
    return asyncio.run(
        rattler.solve(
            [Channel(channel_url)],
            list(specs),
            gateway=Gateway(cache_dir=cache_dir),
            platforms=[platform, "noarch"],
            virtual_packages=generic_virtual_packages(virtual_packages),
        )
    )


@dataclass(frozen=True)
class PypiEntry:
    """A PyPI package to put into a lock: name, version, URL or path, and optionally its sha256."""

    name: str
    version: str
    location: str
    sha256: str | None = None


def write_lock(
    lock_path: Path,
    channel_url: str,
    environments: dict[str, list[str]],
    platforms: Sequence[str],
    pypi: dict[str, list[PypiEntry]] | None = None,
    version: int = 7,
    virtual_packages: dict[str, list[str]] | None = None,
) -> Path:
    """Solve each environment for each platform and write a real pixi.lock (v7, or v6 on request).

    ``virtual_packages`` (platform -> ``["__glibc=2.28", ...]``) are assumed by the solve and
    recorded as the platform's virtual packages (v7 only: v6 has no place for them).
    """
    virtual_packages = virtual_packages or {}
    lock_platforms = [LockPlatform(p, virtual_packages=virtual_packages.get(p)) for p in platforms]
    lock = LockFile(lock_platforms)
    with tempfile.TemporaryDirectory(prefix="world-gateway-") as gateway_cache:
        for env_name, specs in environments.items():
            lock.set_channels(env_name, [LockChannel(channel_url)])
            for platform in lock_platforms:
                assumed = virtual_packages.get(platform.name, [])
                for record in solve(channel_url, specs, platform.name, Path(gateway_cache), assumed):
                    lock.add_conda_package(env_name, platform, record)
                for entry in (pypi or {}).get(env_name, []):
                    lock.add_pypi_package(env_name, platform, entry.name, entry.version, entry.location)
    lock.to_path(lock_path)
    hashes = {e.location: e.sha256 for entries in (pypi or {}).values() for e in entries if e.sha256}
    if hashes:
        add_pypi_hashes(lock_path, hashes)
    if version == 6:
        downgrade_to_v6(lock_path)
    return lock_path


def add_pypi_hashes(lock_path: Path, hashes: dict[str, str]) -> None:
    """rattler writes PyPI entries without hashes; pixi writes ``sha256:`` after ``version:``."""
    lines = lock_path.read_text().splitlines()
    out: list[str] = []
    current: str | None = None
    for line in lines:
        out.append(line)
        if line.startswith("- pypi: "):
            current = line[len("- pypi: ") :].strip()
        elif current is not None and line.startswith("  version: ") and current in hashes:
            out.append(f"  sha256: {hashes[current]}")
            current = None
    lock_path.write_text("\n".join(out) + "\n")


def downgrade_to_v6(lock_path: Path) -> None:
    """Rewrite a v7 lock as v6: no top-level ``platforms`` list, ``version: 6``."""
    text = lock_path.read_text()
    text = re.sub(r"^version: 7$", "version: 6", text, count=1, flags=re.M)
    text = re.sub(r"^platforms:\n(?:- .*\n(?:  .*\n)*)+", "", text, count=1, flags=re.M)
    lock_path.write_text(text)


def lock_workspace(workspace: Path, channel_url: str, version: int = 7) -> Path:
    """Lock a workspace's pixi.toml against ``channel_url`` into ``workspace/pixi.lock``."""
    spec = read_workspace(workspace / "pixi.toml")
    return write_lock(
        workspace / "pixi.lock", channel_url, spec.environments, spec.platforms, version=version
    )


@contextlib.contextmanager
def served_channel(channel_dir: Path) -> Iterator[ChannelServer]:
    """Serve ``channel_dir`` for the duration of the block."""
    server = ChannelServer(channel_dir).start()
    try:
        yield server
    finally:
        server.stop()
