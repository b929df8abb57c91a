"""Helpers of the oci format's tests: run commands, build a tiny base image with umoci, read images."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "examples" / "demo"


def run(
    *args: object, check: bool = True, env: dict[str, str] | None = None, stdout: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command (our console scripts by bare name); fail with its output when it fails.

    ``stdout`` sends the standard output to that file instead of capturing it as text.
    """
    first = str(args[0])
    argv = [str(BIN / first) if first.startswith("pixi-") else first, *map(str, args[1:])]
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    if stdout is not None:
        with open(stdout, "wb") as out:
            raw = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, env=full_env, timeout=300)
        result = subprocess.CompletedProcess(argv, raw.returncode, "", raw.stderr.decode(errors="replace"))
    else:
        result = subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{argv} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def shared_libraries(binary: Path) -> list[Path]:
    """The loader and libraries ``ldd`` says ``binary`` needs (none for a static one)."""
    result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    return sorted({Path(p) for p in re.findall(r"(/\S+) \(0x", result.stdout)})


def make_base_image(layout: Path, work: Path, rootfs_files: dict[str, Path], tag: str, arch: str) -> None:
    """A one-layer base image built by umoci: ``rootfs_files`` (image path -> host file), ``/bin/sh``."""
    if not layout.exists():
        run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:{tag}")
    bundle = work / f"bundle-{tag}"
    run("umoci", "unpack", "--image", f"{layout}:{tag}", bundle)
    rootfs = bundle / "rootfs"
    for image_path, source in rootfs_files.items():
        target = rootfs / image_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    applets = subprocess.run([str(rootfs_files["/bin/busybox"]), "--list"], capture_output=True, text=True)
    for applet in {"sh", *applets.stdout.split()} - {"busybox"}:
        (rootfs / "bin" / applet).symlink_to("busybox")
    run("umoci", "repack", "--image", f"{layout}:{tag}", bundle)
    run(
        "umoci", "config", "--image", f"{layout}:{tag}", "--architecture", arch, "--os", "linux",
        "--config.env", "PATH=/usr/bin:/bin", "--config.cmd", "/bin/sh",
    )  # fmt: skip


def read_layout(archive: Path, dest: Path) -> Path:
    """Extract an OCI archive into ``dest`` (which umoci reads as a layout)."""
    dest.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest


def blob(layout: Path, digest: str) -> dict[str, object]:
    return json.loads((layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_text())


def manifest_digest(archive: Path) -> str:
    with tarfile.open(archive) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
    return index["manifests"][0]["digest"]
