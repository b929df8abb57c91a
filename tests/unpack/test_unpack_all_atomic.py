"""``pixi-unpack PACK --all`` is all or nothing: when one environment fails, whether while it is
assembled (a corrupt package only it uses) or after the first ones moved into place (its post-link
script fails), the output folder is left exactly as it was, and with ``--force`` the environments
and activation scripts it would have replaced are the very ones that were there."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from conftest import damage_package, host_platform, needs_linux64, run

from pixi_pack_ext.testing.world import ChannelServer, build_channel, write_lock

RECIPE = """\
package:
  name: {name}
  version: "1.0"
build:
  number: 0
  script:
    - mkdir -p $PREFIX/bin $PREFIX/share
    - echo {name} > $PREFIX/share/{name}.txt
{extra}
extra:
  platforms: [{platform}]
"""

#: A post-link script (a package's ``bin/.NAME-post-link.sh``) that fails.
FAILING_POST_LINK = """\
    - |
      cat > $PREFIX/bin/.breaker-post-link.sh <<'EOF'
      echo about to fail >&2
      exit 7
      EOF
"""


def snapshot(folder: Path) -> dict[str, tuple[object, ...]]:
    """Everything under ``folder``: each entry's kind, and for files their bytes' sha256, inode
    and modification time (a file put back is the same file, not a copy), for links their target."""
    if not folder.exists():
        return {}
    seen: dict[str, tuple[object, ...]] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            info = path.lstat()
            key = str(path.relative_to(folder))
            if path.is_symlink():
                seen[key] = ("link", os.readlink(path))
            elif path.is_dir():
                seen[key] = ("folder", info.st_mode)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                seen[key] = ("file", digest, info.st_ino, info.st_mtime_ns, info.st_mode)
    return seen


def assert_refused(result: object) -> str:
    error = result.stderr.decode().strip()  # type: ignore[attr-defined]
    assert result.returncode != 0 and "Traceback" not in error, error  # type: ignore[attr-defined]
    return error.splitlines()[-1]


@pytest.fixture(scope="module")
def corrupt_second(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo's default and prod environments in one pack folder ("good"), and the same with
    the package only prod uses (activate-demo) corrupted ("bad"; no manifest, as a damaged
    copy would come without it)."""
    root = tmp_path_factory.mktemp("corrupt-second")
    tar = root / "both.tar"
    run("pixi-pack", workspace, "-e", "default", "-e", "prod", "-p", "linux-64", "-o", tar)
    packs = {}
    for name, source in (("good", tar), ("bad", damage_package(tar, root / "bad.tar", "activate-demo"))):
        folder = root / name
        folder.mkdir()
        run("tar", "-xf", source, "-C", folder)
        (folder / "pixi-pack-manifest.json").unlink()
        packs[name] = folder
    return packs


@needs_linux64
def test_a_corrupt_package_of_the_second_environment_installs_neither(
    corrupt_second: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    error = assert_refused(run("pixi-unpack", corrupt_second["bad"], "--all", "-o", out, check=False))
    assert "activate-demo" in error and "sha256" in error
    assert not out.exists()

    out.mkdir()
    (out / "notes.txt").write_text("the user's\n")
    before = snapshot(out)
    assert_refused(run("pixi-unpack", corrupt_second["bad"], "--all", "-o", out, check=False))
    assert snapshot(out) == before


@needs_linux64
def test_force_keeps_the_installed_environments_when_one_fails(
    corrupt_second: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run("pixi-unpack", corrupt_second["good"], "--all", "-o", out)
    before = snapshot(out)
    assert {"default/bin/hello", "prod/bin/hello", "activate-default.sh", "activate-prod.sh"} <= set(before)
    assert_refused(run("pixi-unpack", corrupt_second["bad"], "--all", "--force", "-o", out, check=False))
    assert snapshot(out) == before


@pytest.fixture(scope="module")
def breaking_second(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pack of ``app`` (a plain package) and ``worker`` (a package whose post-link script fails)."""
    root = tmp_path_factory.mktemp("breaking-second")
    recipes = root / "recipes"
    for name, extra in (("calm", ""), ("breaker", FAILING_POST_LINK)):
        (recipes / name).mkdir(parents=True)
        text = RECIPE.format(name=name, extra=extra.rstrip("\n"), platform=host_platform())
        (recipes / name / "recipe.yaml").write_text(text)
    build_channel(recipes, root / "channel")
    with ChannelServer(root / "channel") as server:
        write_lock(
            root / "pixi.lock", server.url, {"app": ["calm"], "worker": ["breaker"]}, [host_platform()]
        )
        run("pixi-pack", root / "pixi.lock", "-e", "app", "-e", "worker", "-o", root / "both.tar")
    return root / "both.tar"


@pytest.mark.skipif(host_platform().startswith("win"), reason="the post-link script is a bash script")
@pytest.mark.parametrize("force", [False, True])
def test_a_failure_after_the_first_environment_moved_in_puts_everything_back(
    breaking_second: Path, tmp_path: Path, force: bool
) -> None:
    out = tmp_path / "out"
    if force:  # the environments and scripts --force would replace, installed without the scripts run
        run("pixi-unpack", breaking_second, "--all", "-o", out)
        assert (out / "app/share/calm.txt").is_file() and (out / "worker/share/breaker.txt").is_file()
    before = snapshot(out)
    extra = ["--force"] if force else []
    result = run(
        "pixi-unpack", breaking_second, "--all", "--run-post-link-scripts", *extra, "-o", out, check=False
    )
    assert "breaker" in assert_refused(result)
    assert snapshot(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name != "out"]


@needs_linux64
def test_a_user_activate_script_is_neither_needed_nor_touched_by_all(
    corrupt_second: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "activate.sh").write_text("# the user's own\n")
    run("pixi-unpack", corrupt_second["good"], "--all", "-o", out)
    assert (out / "activate.sh").read_text() == "# the user's own\n"
    assert sorted(p.name for p in out.glob("activate*")) == [
        "activate-default.sh",
        "activate-prod.sh",
        "activate.sh",
    ]
