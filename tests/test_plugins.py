"""The plugin system as a user meets it, through the real ``pixi-pack`` console script.

Third-party plugins are real distributions: ``plugins/pixi-pack-unix-socket`` is pip-installed into
the test environment (requirements-test.txt), and broken or conflicting ones are made per test as
``*.dist-info`` folders on ``PYTHONPATH``, which is exactly how ``importlib.metadata`` finds any
installed distribution.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import run
from pack_checks import assert_pack_holds_channel_files

from pixi_pack_ext.testing.locks import relocate_workspace
from pixi_pack_ext.testing.world import ChannelServer

AUTOLOAD_OFF = {"PIXI_PACK_DISABLE_PLUGIN_AUTOLOAD": "1"}

needs_unix_socket_plugin = pytest.mark.skipif(
    sys.platform == "win32", reason="the example plugin serves over Unix domain sockets (POSIX only)"
)


def installed_unix_socket_plugin() -> None:
    pytest.importorskip(
        "pixi_pack_unix_socket",
        reason="pip install -e ./plugins/pixi-pack-unix-socket (requirements-test.txt)",
    )


def fake_distribution(site: Path, dist: str, entry: str, code: str) -> dict[str, str]:
    """Install distribution ``dist`` with one ``pixi_pack`` entry point ``entry`` whose module is ``code``.

    Returns the environment that makes Python see it.
    """
    module = dist.replace("-", "_") + "_plugin"
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[pixi_pack]\n{entry} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(code))
    paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(paths)}


SOURCE_PLUGIN = """\
    from contextlib import asynccontextmanager

    from pixi_pack_ext.hookspecs import ChannelSource, hookimpl


    @asynccontextmanager
    async def open_session(settings):
        yield None


    @hookimpl
    def pixi_pack_sources():
        return [ChannelSource(name={name!r}, schemes=({scheme!r},), open=open_session)]
"""


def pixi_pack(*args: object, env: dict[str, str] | None = None, check: bool = True):  # type: ignore[no-untyped-def]
    return run("pixi-pack", *args, env=env, check=check)


def text(result) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    return result.stdout.decode(), result.stderr.decode()


# --------------------------------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------------------------------


def test_plugins_lists_built_ins_and_installed_plugins() -> None:
    installed_unix_socket_plugin()
    for args in (("plugins",), ("--list-plugins",)):
        out, err = text(pixi_pack(*args))
        assert err == ""
        rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") >= 3}
        assert "built-in" in rows["sources.http"] and "(http://, https://)" in rows["sources.http"]
        assert "(s3://)" in rows["sources.s3"] and "(file://)" in rows["sources.file"]
        assert "formats: tar" in rows["formats.tar"]
        assert "pixi-pack-unix-socket 0.1.0" in rows["unix-socket"]
        assert "sources: unix-socket" in rows["unix-socket"] and "(http+unix://)" in out


def test_autoload_env_var_loads_built_ins_only() -> None:
    installed_unix_socket_plugin()
    out, err = text(pixi_pack("plugins", env=AUTOLOAD_OFF))
    assert "sources.http" in out and "formats.tar" in out
    assert "unix-socket" not in out and "pixi-pack-unix-socket" not in out
    assert err == ""


# --------------------------------------------------------------------------------------------------
# A third-party scheme, with no change to the core
# --------------------------------------------------------------------------------------------------


@needs_unix_socket_plugin
def test_installed_plugin_adds_a_url_scheme(
    workspace: Path, channel_server: ChannelServer, channel_dir: Path, tmp_path: Path
) -> None:
    installed_unix_socket_plugin()
    from pixi_pack_unix_socket.testing import UnixChannelServer

    with UnixChannelServer(channel_dir) as server:
        ws = relocate_workspace(workspace, tmp_path / "ws", channel_server.url, server.url)
        pixi_pack(ws, "-e", "prod", "-p", "linux-64", "-o", tmp_path / "env.tar")
        assert len(server.requests) == 4
        assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir)

        refused = pixi_pack(
            ws, "-e", "prod", "-p", "linux-64", "-o", tmp_path / "off.tar", env=AUTOLOAD_OFF, check=False
        )
    assert refused.returncode == 1
    (line,) = refused.stderr.decode().strip().splitlines()
    assert line.startswith("error: no channel source handles 'http+unix://' URLs (known: ")
    assert "install a plugin" in line
    assert not (tmp_path / "off.tar").exists()


# --------------------------------------------------------------------------------------------------
# Broken and conflicting plugins
# --------------------------------------------------------------------------------------------------


def test_a_plugin_that_fails_to_import_is_skipped_with_a_warning(workspace: Path, tmp_path: Path) -> None:
    env = fake_distribution(
        tmp_path / "site", "broken-dist", "broken", 'raise ImportError("needs libfrobnicate")\n'
    )
    out, err = text(pixi_pack("plugins", env=env))
    assert (
        "plugin 'broken' from broken-dist failed to load and is skipped: ImportError: needs libfrobnicate"
        in (" ".join(err.split()))
    )
    assert "sources.http" in out and "broken" not in out

    # packing goes on without it
    result = pixi_pack(workspace, "-e", "prod", "-p", "linux-64", "-o", tmp_path / "env.tar", env=env)
    assert "broken-dist" in result.stderr.decode()
    assert (tmp_path / "env.tar").is_file()

    # and with autoloading off it is not even looked at
    assert "broken" not in text(pixi_pack("plugins", env={**env, **AUTOLOAD_OFF}))[1]


def test_a_name_declared_twice_is_an_error_naming_both(workspace: Path, tmp_path: Path) -> None:
    env = fake_distribution(
        tmp_path / "site", "clash-dist", "clash", SOURCE_PLUGIN.format(name="http", scheme="gopher")
    )
    listing = pixi_pack("plugins", env=env, check=False)
    out, err = text(listing)
    assert listing.returncode == 1
    assert "clash-dist 1.0" in out  # the listing still shows where the conflict comes from
    message = " ".join(err.split())
    assert (
        "the name 'http' is declared by both plugin 'pixi_pack_ext.builtin.sources.http' (built in)"
        in message
    )
    assert "plugin 'clash' (from clash-dist)" in message and "PIXI_PACK_DISABLE_PLUGIN_AUTOLOAD" in message

    result = pixi_pack(
        workspace, "-e", "prod", "-p", "linux-64", "-o", tmp_path / "env.tar", env=env, check=False
    )
    assert result.returncode == 1
    (line,) = result.stderr.decode().strip().splitlines()
    assert line.startswith("error: pixi_pack_sources: the name 'http' is declared by both")
    assert not (tmp_path / "env.tar").exists()


@needs_unix_socket_plugin
def test_two_plugins_serving_one_scheme_is_an_error(tmp_path: Path) -> None:
    installed_unix_socket_plugin()
    env = fake_distribution(
        tmp_path / "site", "other-sockets", "other", SOURCE_PLUGIN.format(name="other", scheme="http+unix")
    )
    result = pixi_pack("plugins", env=env, check=False)
    message = " ".join(result.stderr.decode().split())
    assert result.returncode == 1
    assert "the scheme 'http+unix' is declared by both plugin 'other' (from other-sockets)" in message
    assert "plugin 'unix-socket' (from pixi-pack-unix-socket)" in message


def test_a_plugin_may_take_over_a_built_in_scheme(workspace: Path, tmp_path: Path) -> None:
    """A third-party source for ``http://`` is used instead of the built-in one (here: it refuses)."""
    code = """\
        from contextlib import asynccontextmanager

        from pixi_pack_ext.errors import DownloadError
        from pixi_pack_ext.hookspecs import ChannelSource, hookimpl


        class Refusing:
            async def download(self, url, sink):
                raise DownloadError(f"corporate-proxy plugin refuses {url}")


        @asynccontextmanager
        async def open_session(settings):
            yield Refusing()


        @hookimpl
        def pixi_pack_sources():
            return [ChannelSource(name="corporate-proxy", schemes=("http", "https"), open=open_session)]
    """
    env = fake_distribution(tmp_path / "site", "corporate-proxy", "corporate-proxy", code)
    result = pixi_pack(
        workspace, "-e", "prod", "-p", "linux-64", "-o", tmp_path / "env.tar", env=env, check=False
    )
    assert result.returncode == 1
    assert "corporate-proxy plugin refuses http://127.0.0.1:" in result.stderr.decode()


def test_plugins_that_do_not_fit_the_hooks_are_reported(tmp_path: Path) -> None:
    site = tmp_path / "site"
    typo = """\
        from pixi_pack_ext.hookspecs import hookimpl


        @hookimpl
        def pixi_pack_source():
            return []
    """
    wrong_signature = """\
        from pixi_pack_ext.hookspecs import hookimpl


        @hookimpl
        def pixi_pack_formats(settings):
            return []
    """
    env = fake_distribution(site, "typo-dist", "typo", typo)
    env = fake_distribution(site, "wrong-args", "wrong", wrong_signature)
    out, err = text(pixi_pack("plugins", env=env))
    message = " ".join(err.split())
    assert (
        "plugin 'typo' from typo-dist implements 'pixi_pack_source', which is not a pixi-pack hook" in message
    )
    assert "plugin 'wrong' from wrong-args does not fit the hooks" in message and "skipped" in message
    assert "typo-dist 1.0" in out and "wrong-args" not in out


def test_one_module_under_two_entry_points_is_loaded_once(tmp_path: Path) -> None:
    env = fake_distribution(
        tmp_path / "site", "twice-dist", "one", SOURCE_PLUGIN.format(name="twice", scheme="twice")
    )
    entry_points = tmp_path / "site" / "twice_dist-1.0.dist-info" / "entry_points.txt"
    entry_points.write_text(entry_points.read_text() + "two = twice_dist_plugin\n")
    result = pixi_pack("plugins", env=env)
    out, err = text(result)
    assert "plugin 'two' from twice-dist is the module of plugin 'one' again; it is skipped" in " ".join(
        err.split()
    )
    assert "(twice://)" in out


def test_two_distributions_with_one_plugin_name(tmp_path: Path) -> None:
    installed_unix_socket_plugin()
    env = fake_distribution(
        tmp_path / "site", "impostor-dist", "unix-socket", SOURCE_PLUGIN.format(name="fake", scheme="fake")
    )
    out, err = text(pixi_pack("plugins", env=env))
    message = " ".join(err.split())
    assert "has the name of plugin 'unix-socket' from" in message and "it is skipped" in message
    assert "impostor-dist" in message and "pixi-pack-unix-socket" in message
    # the one found first on the path is loaded, the other is not
    assert ("(fake://)" in out) != ("(http+unix://)" in out)


def test_the_guide_shows_the_shipped_example() -> None:
    """docs/plugins.md quotes the example plugin whole; it must stay the code that is tested."""
    repo = Path(__file__).resolve().parent.parent
    guide = (repo / "docs" / "plugins.md").read_text()
    example = repo / "plugins" / "pixi-pack-unix-socket"
    for shipped in (example / "pyproject.toml", example / "src" / "pixi_pack_unix_socket" / "plugin.py"):
        assert shipped.read_text() in guide, f"docs/plugins.md no longer quotes {shipped.relative_to(repo)}"
