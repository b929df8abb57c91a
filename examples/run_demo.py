"""The main job, end to end, offline: build the demo channel, serve it, lock, pack, unpack, run.

    python examples/run_demo.py [--keep]

Everything happens under examples/demo/.work/ (removed first). The channel is built from
examples/demo/recipes with py-rattler-build and served on 127.0.0.1, the workspace is locked with
rattler into a real pixi.lock, then the real ``pixi-pack`` and ``pixi-unpack`` commands run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from pixi_pack_ext.testing.world import build_channel, lock_workspace, served_channel

HERE = Path(__file__).resolve().parent
DEMO = HERE / "demo"
WORK = DEMO / ".work"
BIN = Path(sys.executable).parent


def step(title: str, *argv: str | Path, cwd: Path | None = None) -> None:
    print(f"\n$ {' '.join(str(a) for a in argv)}", flush=True)
    subprocess.run([str(a) for a in argv], cwd=cwd, check=True)


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    channel = WORK / "channel"
    workspace = WORK / "workspace"
    target = WORK / "target"
    print(f"building the demo channel from {DEMO / 'recipes'} ...", flush=True)
    built = build_channel(DEMO / "recipes", channel)
    print(f"built {len(built)} packages into {channel}")
    workspace.mkdir(parents=True)
    shutil.copy(DEMO / "pixi.toml", workspace / "pixi.toml")
    with served_channel(channel) as server:
        print(f"serving the channel at {server.url}")
        lock_workspace(workspace, server.url)
        print(f"locked {workspace / 'pixi.lock'}")
        step("pack", BIN / "pixi-pack", workspace, "-e", "prod", "-o", WORK / "environment.tar")
    # The channel server is gone now: unpacking needs nothing but the pack.
    target.mkdir()
    step("unpack", BIN / "pixi-unpack", WORK / "environment.tar", "-o", target)
    if sys.platform != "win32":
        step(
            "run",
            "bash",
            "-c",
            '. ./activate.sh && hello && hello-script && echo "$ACTIVATE_DEMO"',
            cwd=target,
        )
    print(
        f"\ndone: the environment is in {target / 'env'}; activate it with 'source {target / 'activate.sh'}'"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
