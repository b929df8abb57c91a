"""The main job, end to end, offline: build the demo channel, lock, pack, unpack, run.

    python examples/run_demo.py                          # the whole job, in examples/demo/.work/
    python examples/run_demo.py --workspace DIR          # only make a workspace to follow the docs in

The channel is built from examples/demo/recipes with py-rattler-build into a folder next to the
workspace, and the workspace is locked against it as a ``file://`` channel with rattler into a real
pixi.lock: the workspace then works offline, with no server, for as long as the folder exists.
``pixi-pack`` and ``pixi-unpack`` are the real commands of the running Python environment.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEMO = HERE / "demo"
WORK = DEMO / ".work"
BIN = Path(sys.executable).parent
#: The channel's folder inside a workspace made here.
CHANNEL = "demo-channel"


def step(*argv: str | Path, cwd: Path | None = None) -> None:
    print(f"\n$ {' '.join(str(a) for a in argv)}", flush=True)
    subprocess.run([str(a) for a in argv], cwd=cwd, check=True)


def make_workspace(folder: Path) -> Path:
    """``folder`` with the demo's pixi.toml and a pixi.lock on the channel built in ``folder/demo-channel``."""
    from pixi_pack_ext.testing.world import build_channel, lock_workspace

    channel = folder / CHANNEL
    print(f"building the demo channel from {DEMO / 'recipes'} ...", flush=True)
    built = build_channel(DEMO / "recipes", channel)
    print(f"built {len(built)} packages into {channel}")
    url = channel.resolve().as_uri() + "/"
    manifest = (DEMO / "pixi.toml").read_text()
    manifest = re.sub(r"^channels = .*$", f'channels = ["{url}"]', manifest, count=1, flags=re.M)
    (folder / "pixi.toml").write_text(manifest)
    lock_workspace(folder, url)
    print(f"locked {folder / 'pixi.lock'} against {url}")
    return folder


def prepare_folder(folder: Path) -> None:
    """A new or empty folder, or one an earlier ``--workspace`` run made (replaced); else refuse."""
    if folder.exists() and not folder.is_dir():
        raise SystemExit(f"error: '{folder}' is a file; choose a new folder for --workspace")
    if folder.is_dir() and any(folder.iterdir()):
        if not (folder / CHANNEL).is_dir():
            raise SystemExit(
                f"error: '{folder}' is not empty and is no demo workspace; choose a new folder for --workspace"
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)


def whole_job() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    workspace = make_workspace(WORK / "workspace")
    target = WORK / "target"
    step(BIN / "pixi-pack", workspace, "-e", "prod", "-o", WORK / "environment.tar")
    # Unpacking needs nothing but the pack.
    target.mkdir()
    step(BIN / "pixi-unpack", WORK / "environment.tar", "-o", target)
    if sys.platform != "win32":
        step("bash", "-c", '. ./activate.sh && hello && hello-script && echo "$ACTIVATE_DEMO"', cwd=target)
    print(
        f"\ndone: the environment is in {target / 'env'}; activate it with 'source {target / 'activate.sh'}'"
        f"\nthe workspace {workspace} keeps working offline: cd there and follow docs/quickstart.md"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="run_demo.py",
        description="Build the demo channel from examples/demo/recipes, lock the demo workspace against "
        "it, pack its prod environment with pixi-pack, unpack it with pixi-unpack and run its programs, "
        "all offline, in examples/demo/.work/ (made afresh each run).",
    )
    parser.add_argument(
        "--workspace",
        metavar="DIR",
        type=Path,
        help="only make a demo workspace in DIR (pixi.toml, pixi.lock, and the channel in "
        f"DIR/{CHANNEL}), print its path and stop; the docs' commands then run in it",
    )
    args = parser.parse_args(argv)
    if args.workspace is not None:
        folder = args.workspace.absolute()
        prepare_folder(folder)
        make_workspace(folder)
        print(folder)
        return 0
    whole_job()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
