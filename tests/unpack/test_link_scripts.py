"""Link scripts end to end: real packages whose post-link script writes a marker, packed from a real
lock and unpacked by ``pixi-unpack``. Not run (one warning naming them) unless asked, by the flag or
by pixi's ``run-post-link-scripts = "insecure"``; run as conda runs them; a failing one fails the
unpack and leaves no environment."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import host_platform, run

from pixi_pack_ext.testing.world import ChannelServer, build_channel, write_lock

pytestmark = pytest.mark.skipif(host_platform().startswith("win"), reason="the scripts are bash scripts")

POST_LINK = """\
echo "$PKG_NAME $PKG_VERSION $PKG_BUILDNUM" > "$PREFIX/marker.txt"
pwd >> "$PREFIX/marker.txt"
echo "a note for the user from {name}" >> "$PREFIX/.messages.txt"
echo "plain output of {name}"
"""

RECIPE = """\
package:
  name: {name}
  version: "{version}"
build:
  number: 3
  script:
    - mkdir -p $PREFIX/bin
    - |
      cat > $PREFIX/bin/.{name}-{kind}.sh <<'EOF'
{body}
      EOF
"""


def _recipe(name: str, version: str, kind: str, body: str) -> str:
    indented = "\n".join("      " + line for line in body.format(name=name).splitlines())
    return RECIPE.format(name=name, version=version, kind=kind, body=indented)


@pytest.fixture(scope="module")
def link_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A lock with environments ``good`` (a post-link and a pre-unlink package), ``bad`` (a
    post-link script that fails) and ``plain`` (no scripts), served from a real channel."""
    root = tmp_path_factory.mktemp("links")
    recipes = root / "recipes"
    for name, version, kind, body in [
        ("linker", "1.2", "post-link", POST_LINK),
        ("unlinker", "0.1", "pre-unlink", 'echo bye\ntouch "$PREFIX/../pre-unlink-ran"'),
        ("breaker", "2.0", "post-link", "echo about to fail >&2\nexit 7"),
    ]:
        folder = recipes / name
        folder.mkdir(parents=True)
        text = _recipe(name, version, kind, body)
        text += f"extra:\n  platforms: [{host_platform()}]\n"
        (folder / "recipe.yaml").write_text(text)
    channel = root / "channel"
    build_channel(recipes, channel)
    with ChannelServer(channel) as server:
        envs = {
            "good": ["linker", "unlinker"],
            "bad": ["breaker", "linker"],
            "plain": ["unlinker"],
            "linker": ["linker"],
        }
        write_lock(root / "pixi.lock", server.url, envs, [host_platform()])
        packs = root / "packs"
        packs.mkdir()
        for env in envs:
            run("pixi-pack", root / "pixi.lock", "-e", env, "-o", packs / f"{env}.tar")
        delta = packs / "good-since-plain.tar"
        run("pixi-pack", root / "pixi.lock", "-e", "good", "--since", packs / "plain.tar", "-o", delta)
        removing = packs / "linker-since-plain.tar"
        run("pixi-pack", root / "pixi.lock", "-e", "linker", "--since", packs / "plain.tar", "-o", removing)
    yield packs


def test_post_link_scripts_are_not_run_without_a_word(link_world: Path, tmp_path: Path) -> None:
    result = run("pixi-unpack", link_world / "good.tar", "-o", tmp_path)
    err = " ".join(result.stderr.decode().split())
    assert not (tmp_path / "env" / "marker.txt").exists()
    assert (tmp_path / "env" / "bin" / ".linker-post-link.sh").is_file()
    assert err.count("not running the post-link scripts of linker;") == 1, err
    assert "unlinker also has pre-unlink scripts" in err and "--run-post-link-scripts" in err, err


def test_pre_unlink_only_is_named_once(link_world: Path, tmp_path: Path) -> None:
    err = " ".join(run("pixi-unpack", link_world / "plain.tar", "-o", tmp_path).stderr.decode().split())
    assert err.count("unlinker has pre-unlink scripts") == 1, err


@pytest.mark.parametrize("how", ["flag", "config"])
def test_post_link_scripts_run_as_conda_runs_them(link_world: Path, tmp_path: Path, how: str) -> None:
    if how == "flag":
        extra: list[object] = ["--run-post-link-scripts"]
    else:
        config = tmp_path / "config.toml"
        config.write_text('run-post-link-scripts = "insecure"\n')
        extra = ["-c", config]
    out = tmp_path / "out"
    result = run("pixi-unpack", link_world / "good.tar", "-o", out, *extra)
    prefix = out / "env"
    lines = (prefix / "marker.txt").read_text().splitlines()
    assert lines == ["linker 1.2 3", str(prefix / "bin")]
    err = result.stderr.decode()
    assert "a note for the user from linker" in err and "not running" not in err, err
    assert not (prefix / ".messages.txt").exists()


def test_a_failing_post_link_script_fails_the_unpack(link_world: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("pixi-unpack", link_world / "bad.tar", "-o", out, "--run-post-link-scripts", check=False)
    err = result.stderr.decode()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert result.returncode != 0 and "Traceback" not in err and len(errors) == 1, err
    assert "post-link script of package 'breaker'" in errors[0] and "exit code 7" in errors[0], err
    assert "about to fail" in err  # its output is shown above the error
    assert not out.exists()  # the output folder was made by this run: nothing is left


def test_a_wrong_config_value_is_one_error(link_world: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("run-post-link-scripts = true\n")
    result = run("pixi-unpack", link_world / "good.tar", "-o", tmp_path / "out", "-c", config, check=False)
    err = result.stderr.decode()
    assert result.returncode != 0 and "Traceback" not in err, err
    assert "'run-post-link-scripts'" in err and '"insecure"' in err and "a boolean" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("run_them", [False, True])
def test_a_delta_treats_the_link_scripts_of_what_it_adds_alike(
    link_world: Path, tmp_path: Path, run_them: bool
) -> None:
    """A delta that adds the post-link package: warned about (or run when asked) as in a full
    unpack, and its conda-meta record names where it came from, not the delta's temporary folder."""
    run("pixi-unpack", link_world / "plain.tar", "-o", tmp_path)
    extra = ["--run-post-link-scripts"] if run_them else []
    result = run("pixi-unpack", link_world / "good-since-plain.tar", "-o", tmp_path, *extra)
    err = " ".join(result.stderr.decode().split())
    prefix = tmp_path / "env"
    assert (prefix / "marker.txt").exists() == run_them
    assert ("not running the post-link scripts of linker;" in err) != run_them, err
    record = json.loads(next((prefix / "conda-meta").glob("linker-*.json")).read_text())
    assert record["url"].startswith("http://127.0.0.1:") and "extracted_package_dir" not in record, record


def test_a_delta_that_removes_a_package_runs_no_pre_unlink_script(link_world: Path, tmp_path: Path) -> None:
    """Removing ``unlinker`` (a pre-unlink script that writes next to the environment) runs nothing
    from the pack without the flag: rattler would run it while unlinking."""
    run("pixi-unpack", link_world / "plain.tar", "-o", tmp_path)
    run("pixi-unpack", link_world / "linker-since-plain.tar", "-o", tmp_path)
    prefix = tmp_path / "env"
    assert not list((prefix / "conda-meta").glob("unlinker-*.json"))
    assert not (tmp_path / "pre-unlink-ran").exists()
