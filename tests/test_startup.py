"""Start-up: the console scripts import what a run needs when it needs it.

Each command runs in a fresh interpreter under ``-X importtime``, which names every module imported;
a heavy one turning up where it is not needed is the regression these tests catch (how long they
take is for benchmarks/, not for assertions here).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import pack_argv

import pixi_pack_ext

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
#: Modules that --version must never import.
HEAVY = ("rattler", "rich", "rich_click", "click", "httpx", "pluggy", "importlib.metadata", "asyncio")


def imported_by(
    args: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run a console script under ``-X importtime``; its result and the modules it imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    modules = {
        line.split("|")[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return result, modules


def heavy(modules: set[str], names: tuple[str, ...] = HEAVY) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_the_version_is_the_one_pyproject_declares() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert pixi_pack_ext.__version__ == declared


@pytest.mark.parametrize("command", ["pixi-pack", "pixi-unpack"])
@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_imports_nothing_heavy(command: str, flag: str) -> None:
    result, modules = imported_by([str(BIN / command), flag])
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == f"{command}, version {pixi_pack_ext.__version__}\n"
    assert heavy(modules) == []


@pytest.mark.parametrize("command", ["pixi-pack", "pixi-unpack"])
def test_help_is_kept_and_printed_again_without_rich_click(command: str, tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    first, first_modules = imported_by([str(BIN / command), "--help"], env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "rich_click" in first_modules and "Usage:" in first.stdout
    again, modules = imported_by([str(BIN / command), "--help"], env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout == first.stdout
    assert heavy(modules) == []


def test_help_is_rendered_again_when_the_width_changes(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    narrow, _ = imported_by([str(BIN / "pixi-pack"), "--help"], {**env, "COLUMNS": "60"})
    wide, modules = imported_by([str(BIN / "pixi-pack"), "--help"], {**env, "COLUMNS": "120"})
    assert "rich_click" in modules
    assert max(map(len, narrow.stdout.splitlines())) <= 60 < max(map(len, wide.stdout.splitlines()))


def test_help_shows_a_plugin_installed_after_it_was_kept(tmp_path: Path) -> None:
    """A plugin's format flags appear in the help as soon as the plugin is installed (here: a
    distribution on PYTHONPATH, which is how importlib.metadata finds any installed one)."""
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    before, _ = imported_by([str(BIN / "pixi-pack"), "--help"], env)
    site = tmp_path / "site"
    (site / "helpflag_plugin.py").parent.mkdir(parents=True)
    (site / "helpflag_plugin.py").write_text(
        "from pixi_pack_ext.hookspecs import FormatOption, PackFormat, hookimpl\n"
        "@hookimpl\n"
        "def pixi_pack_formats():\n"
        "    return [PackFormat(name='helpflag', write=lambda request: None,\n"
        "            default_output=lambda platform: 'environment.helpflag',\n"
        "            options=(FormatOption('shiny-level', 'How shiny the pack is.'),))]\n"
    )
    info = site / "helpflag_dist-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: helpflag-dist\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pixi_pack]\nhelpflag = helpflag_plugin\n")
    after, _ = imported_by([str(BIN / "pixi-pack"), "--help"], {**env, "PYTHONPATH": str(site)})
    assert "--shiny-level" not in before.stdout
    assert "--shiny-level" in after.stdout, after.stderr[-2000:]


#: What a quiet run that goes well does without: rich and rich-click render help, errors and
#: progress; httpx serves what rattler's downloader cannot; importlib.metadata lists the plugins'
#: entry points once until an install changes; the probe asking an HTTP server whether it keeps
#: connections open reads the answer's head itself, without http.client (and the email package).
NOT_FOR_A_QUIET_RUN = (
    "rich",
    "rich_click",
    "httpx",
    "httpcore",
    "importlib.metadata",
    "http.client",
    "email",
)


def test_a_quiet_pack_and_unpack_import_neither_rich_nor_httpx(workspace: Path, tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    for run in ("first", "again"):
        out = tmp_path / f"{run}.tar"
        result, modules = imported_by([*pack_argv(workspace, out), "-q"], env)
        assert result.returncode == 0, result.stderr[-3000:]
        assert out.is_file()
    assert heavy(modules, NOT_FOR_A_QUIET_RUN) == []
    result, modules = imported_by(
        [str(BIN / "pixi-unpack"), str(out), "-o", str(tmp_path / "unpacked"), "-q"], env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "unpacked" / "env" / "conda-meta").is_dir()
    assert heavy(modules, NOT_FOR_A_QUIET_RUN) == []


def test_a_usage_error_is_shown_by_rich_click(tmp_path: Path) -> None:
    """Runs are parsed by click alone; a usage error is still rendered as rich-click renders it."""
    result, modules = imported_by([str(BIN / "pixi-pack"), "--no-such-flag"])
    assert result.returncode == 2
    assert "rich_click" in modules
    assert "No such option" in result.stderr and "Try 'pixi-pack -h' for help" in result.stderr
    result, _ = imported_by([str(BIN / "pixi-pack"), "--format", "tar", "--directory-only"])
    assert result.returncode == 2
    assert "choose one of --format, --directory-only and --create-executable" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_kept_text_another_user_could_have_written_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kept entry-point list names modules to import: a root run keeping a user's HOME must not
    read a cache that user (or anyone) could have written."""
    from pixi_pack_ext import startup_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    startup_cache.keep("entry-points", "key", "kept text")
    assert startup_cache.read("entry-points", "key") == "kept text"
    folder = Path(startup_cache.cache_dir("entry-points"))
    folder.chmod(0o777)
    assert startup_cache.read("entry-points", "key") is None  # a folder anyone can write to
    folder.chmod(0o755)
    kept = next(folder.glob("*.txt"))
    kept.chmod(0o666)
    assert startup_cache.read("entry-points", "key") is None  # a file anyone can write to
    kept.chmod(0o644)
    assert startup_cache.read("entry-points", "key") == "kept text"
    if os.geteuid() == 0:
        os.chown(kept, 12345, -1)
        assert startup_cache.read("entry-points", "key") is None  # another user's file
