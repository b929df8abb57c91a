"""End to end through ``pixi-pack --format oci``: build images of the demo environment and check them
with skopeo and umoci, run their entrypoint in a chroot, and see the errors a user would."""

# ruff: noqa: F811  (fixtures are imported from oci_world and requested as parameters)
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest
import rattler
import zstandard
from oci_helpers import blob, manifest_digest, read_layout, run
from oci_world import _fresh_plugins, base_layout, channel_server, oci_tools, workspace  # noqa: F401

from pixi_pack_ext.testing.world import ChannelServer

needs_linux64 = pytest.mark.skipif(
    str(rattler.Subdir.current()) != "linux-64", reason="the demo's binaries and the base image are linux-64"
)
pytestmark = needs_linux64


def pack_image(
    workspace: Path, output: Path, *args: object, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run(
        "pixi-pack",
        workspace,
        "-e",
        "prod",
        "-p",
        "linux-64",
        "--format",
        "oci",
        "-o",
        output,
        *args,
        check=check,
    )


NAME = "docker.io/demo/env:latest"  # what --image-name demo/env stands for


def unpack_rootfs(archive: Path, work: Path, name: str = NAME) -> Path:
    """The image's root file system, unpacked by umoci."""
    layout = read_layout(archive, work / "layout")
    run("umoci", "unpack", "--image", f"{layout}:{name}", work / "bundle")
    return work / "bundle" / "rootfs"


def chroot(rootfs: Path, *command: str) -> str:
    """Run ``command`` inside ``rootfs`` (as root); skip when this machine does not allow it."""
    program = shutil.which("chroot", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if program is None:
        pytest.skip("chroot is not installed")
    probe = subprocess.run([program, str(rootfs), "/bin/sh", "-c", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"chroot is not permitted here: {probe.stderr.decode(errors='replace').strip()}")
    return run(program, rootfs, *command, env={"PATH": "/usr/bin:/bin"}).stdout


@pytest.fixture(scope="module")
def image(workspace: Path, base_layout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The prod environment on the amd64 busybox base, with default settings."""
    output = tmp_path_factory.mktemp("oci-image") / "image.tar"
    pack_image(workspace, output, "--base-image", f"{base_layout}:amd64", "--image-name", "demo/env")
    return output


def test_skopeo_reads_the_image(image: Path) -> None:
    info = json.loads(run("skopeo", "inspect", f"oci-archive:{image}").stdout)
    assert (info["Architecture"], info["Os"]) == ("amd64", "linux")
    assert "PATH=/app/env/bin:/usr/bin:/bin" in info["Env"]
    assert "CONDA_PREFIX=/app/env" in info["Env"]
    assert len(info["Layers"]) == 3  # base, environment, entrypoint
    config = json.loads(run("skopeo", "inspect", "--config", f"oci-archive:{image}").stdout)
    assert config["config"]["Entrypoint"] == ["/entrypoint.sh"]
    assert config["config"]["Cmd"] == ["/bin/sh"]  # the base's command, run in the environment
    assert config["created"] == "1970-01-01T00:00:00Z"
    manifest = json.loads(run("skopeo", "inspect", "--raw", f"oci-archive:{image}").stdout)
    assert [layer["mediaType"] for layer in manifest["layers"]][1:] == [
        "application/vnd.oci.image.layer.v1.tar+gzip"
    ] * 2


def test_layers_match_their_digests_and_diff_ids(image: Path, tmp_path: Path) -> None:
    run("skopeo", "copy", f"oci-archive:{image}", f"dir:{tmp_path / 'copy'}")  # skopeo checks digests
    layout = read_layout(image, tmp_path / "layout")
    index = json.loads((layout / "index.json").read_text())
    manifest = blob(layout, index["manifests"][0]["digest"])
    config = blob(layout, manifest["config"]["digest"])  # type: ignore[index]
    for layer, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True):  # type: ignore[arg-type]
        data = (layout / "blobs" / "sha256" / layer["digest"].removeprefix("sha256:")).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == layer["digest"]
        assert "sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest() == diff_id


def test_rootfs_holds_the_environment_with_rewritten_prefixes(image: Path, tmp_path: Path) -> None:
    rootfs = unpack_rootfs(image, tmp_path)
    env = rootfs / "app" / "env"
    assert b"hello-bin prefix=/app/env\0" in (env / "bin" / "hello").read_bytes()
    assert (env / "bin" / "hello-script").read_text().splitlines()[1] == 'echo "hello-script prefix=/app/env"'
    assert (env / "share" / "greeting" / "message.txt").read_text() == "hello from greeting-data\n"
    entrypoint = rootfs / "entrypoint.sh"
    assert os.access(entrypoint, os.X_OK)
    assert entrypoint.read_text().endswith('exec "$@"\n')
    assert not (env / "CACHEDIR.TAG").exists()
    record = json.loads(next((env / "conda-meta").glob("hello-bin-*.json")).read_text())
    assert "extracted_package_dir" not in record and record["url"].startswith("file:///pixi-pack/channel/")


def test_entrypoint_activates_the_environment_in_a_chroot(image: Path, tmp_path: Path) -> None:
    rootfs = unpack_rootfs(image, tmp_path)
    assert chroot(rootfs, "/entrypoint.sh", "hello") == "hello-bin prefix=/app/env\n"
    assert chroot(rootfs, "/entrypoint.sh", "hello-script").splitlines() == [
        "hello-script prefix=/app/env",
        "hello from greeting-data",
    ]
    shown = chroot(rootfs, "/entrypoint.sh", "sh", "-c", 'echo "$CONDA_PREFIX|$ACTIVATE_DEMO"')
    assert shown == "/app/env|activated from /app/env\n"


def test_same_lock_and_base_give_the_same_image(
    image: Path, workspace: Path, base_layout: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again.tar"
    pack_image(
        workspace,
        again,
        "--format-option",
        f"base-image={base_layout}:amd64",
        "--format-option",
        "image-name=demo/env",
    )
    assert manifest_digest(again) == manifest_digest(image)
    assert again.read_bytes() == image.read_bytes()
    # The base as an OCI archive instead of a folder, and the image streamed to standard output.
    base_archive = tmp_path / "base.tar"
    with tarfile.open(base_archive, "w") as tar:
        for child in sorted(base_layout.iterdir()):
            tar.add(child, arcname=child.name)
    streamed = tmp_path / "streamed.tar"
    run(
        "pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "--format", "oci", "-o", "-",
        "--base-image", f"{base_archive}:amd64", "--image-name", "demo/env", "-q", stdout=streamed,
    )  # fmt: skip
    assert streamed.read_bytes() == image.read_bytes()


def test_options_zstd_prefix_entrypoint_and_name(workspace: Path, base_layout: Path, tmp_path: Path) -> None:
    output = tmp_path / "tools.tar"
    pack_image(
        workspace, output, "--base-image", f"{base_layout}:amd64", "--compression", "zstd",
        "--image-prefix", "/opt/tools", "--entrypoint", "hello", "--image-name", "demo/tools:1.0",
    )  # fmt: skip
    name = "docker.io/demo/tools:1.0"
    config = json.loads(run("skopeo", "inspect", "--config", f"oci-archive:{output}:{name}").stdout)
    assert config["config"]["Entrypoint"] == ["/entrypoint.sh", "hello"]
    assert "Cmd" not in config["config"]
    assert "CONDA_PREFIX=/opt/tools" in config["config"]["Env"]
    with tarfile.open(output) as tar:
        docker = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert docker[0]["RepoTags"] == [name]
    layout = read_layout(output, tmp_path / "layout")
    manifest = blob(layout, manifest_digest(output))
    for layer, diff_id in list(zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True))[1:]:  # type: ignore[arg-type]
        assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
        data = (layout / "blobs" / "sha256" / layer["digest"].removeprefix("sha256:")).read_bytes()
        plain = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        assert "sha256:" + hashlib.sha256(plain).hexdigest() == diff_id
    # umoci 0.4 reads no zstd: skopeo recompresses the image (checking every layer) for it.
    run(
        "skopeo",
        "copy",
        "--dest-compress-format",
        "gzip",
        f"oci-archive:{output}",
        f"oci:{tmp_path / 'gz'}:{name}",
    )
    run("umoci", "unpack", "--image", f"{tmp_path / 'gz'}:{name}", tmp_path / "bundle")
    rootfs = tmp_path / "bundle" / "rootfs"
    assert chroot(rootfs, *config["config"]["Entrypoint"]) == "hello-bin prefix=/opt/tools\n"


def test_image_without_base_or_name(workspace: Path, tmp_path: Path) -> None:
    output = tmp_path / "image.tar"
    assert "no --base-image" in pack_image(workspace, output).stderr
    info = json.loads(run("skopeo", "inspect", f"oci-archive:{output}").stdout)
    assert len(info["Layers"]) == 2 and info["Architecture"] == "amd64"
    assert info["Env"] == [
        "PATH=/app/env/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "CONDA_PREFIX=/app/env",
    ]
    with tarfile.open(output) as tar:
        docker = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert docker[0]["RepoTags"] == []


def test_podman_loads_the_image(image: Path, tmp_path: Path) -> None:
    podman = shutil.which("podman")
    if podman is None:
        pytest.skip("podman is not installed (Debian package podman)")
    with tempfile.TemporaryDirectory(prefix="pp-") as short:  # podman wants a short runroot path
        store = [podman, "--root", tmp_path / "root", "--runroot", short, "--storage-driver", "vfs"]
        loaded = run(*store, "load", "-i", image, check=False)
        if loaded.returncode != 0:
            pytest.skip(f"podman cannot keep images here: {loaded.stderr.strip().splitlines()[-1:]}")
        info = json.loads(run(*store, "image", "inspect", NAME).stdout)[0]
    assert f"Loaded image: {NAME}" in loaded.stdout
    assert (info["Architecture"], info["Os"]) == ("amd64", "linux")
    assert info["Config"]["Entrypoint"] == ["/entrypoint.sh"]


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_non_linux_target_is_refused_before_downloading(
    workspace: Path, channel_server: ChannelServer, tmp_path: Path
) -> None:
    before = channel_server.log.count(".conda")
    output = tmp_path / "image.tar"
    result = run(
        "pixi-pack", workspace, "-e", "prod", "-p", "win-64", "--format", "oci", "-o", output, check=False
    )
    line = _error_line(result)
    assert "builds Linux images" in line and "'win-64' is not a Linux platform" in line
    assert not output.exists() and not list(tmp_path.iterdir())
    assert channel_server.log.count(".conda") == before


def test_several_environments_are_refused_before_downloading(
    workspace: Path, channel_server: ChannelServer, tmp_path: Path
) -> None:
    before = channel_server.log.count(".conda")
    result = run("pixi-pack", workspace, "-e", "default", "-e", "prod", "-p", "linux-64",
                 "--format", "oci", "-o", tmp_path / "image.tar", check=False)  # fmt: skip
    assert result.returncode != 0
    assert _error_line(result) == (
        "error: a pack of several environments is written as a tar, a folder or a self-extracting "
        "script, not 'oci'; pack each environment on its own (-e NAME --format oci)"
    )
    assert not list(tmp_path.iterdir())
    assert channel_server.log.count(".conda") == before


def test_base_image_of_another_architecture_is_refused_before_downloading(
    workspace: Path, base_layout: Path, channel_server: ChannelServer, tmp_path: Path
) -> None:
    before = channel_server.log.count(".conda")
    output = tmp_path / "image.tar"
    line = _error_line(pack_image(workspace, output, "--base-image", f"{base_layout}:arm64", check=False))
    assert "is for linux/arm64, but the target platform needs linux/amd64" in line
    assert not list(tmp_path.iterdir())
    assert channel_server.log.count(".conda") == before


def test_corrupt_base_layer_is_refused(workspace: Path, base_layout: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(base_layout, broken)
    index = json.loads((broken / "index.json").read_text())
    ref = "org.opencontainers.image.ref.name"
    chosen = next(m for m in index["manifests"] if m["annotations"][ref] == "amd64")
    layer_digest = blob(broken, chosen["digest"])["layers"][0]["digest"]  # type: ignore[index]
    layer_path = broken / "blobs" / "sha256" / layer_digest.removeprefix("sha256:")
    data = bytearray(layer_path.read_bytes())
    data[-100] ^= 0xFF
    layer_path.write_bytes(bytes(data))
    output = tmp_path / "out" / "image.tar"
    output.parent.mkdir()
    line = _error_line(pack_image(workspace, output, "--base-image", f"{broken}:amd64", check=False))
    assert "is corrupt" in line
    assert not list(output.parent.iterdir())


def test_options_a_format_does_not_take_are_refused(workspace: Path, tmp_path: Path) -> None:
    result = run(
        "pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "--base-image", "x", "-o", tmp_path / "e.tar",
        check=False,
    )  # fmt: skip
    assert _error_line(result) == "error: format 'tar' has no option 'base-image' (its options: none)"
    line = _error_line(
        pack_image(workspace, tmp_path / "i.tar", "--format-option", "colour=red", check=False)
    )
    assert "format 'oci' has no option 'colour'" in line
    line = _error_line(pack_image(workspace, tmp_path / "i.tar", "--compression", "lz4", check=False))
    assert "unknown compression 'lz4'" in line
    line = _error_line(pack_image(workspace, tmp_path / "i.tar", "--format-option", "zstd", check=False))
    assert line == "error: --format-option expects NAME=VALUE, got 'zstd'"
    line = _error_line(pack_image(workspace, tmp_path / "i.tar", "--image-prefix", "app/env", check=False))
    assert "--image-prefix must be an absolute path" in line
    assert not list(tmp_path.iterdir())


def test_source_date_epoch_sets_the_image_time(workspace: Path, tmp_path: Path) -> None:
    output = tmp_path / "image.tar"
    run(
        "pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "--format", "oci", "-o", output,
        env={"SOURCE_DATE_EPOCH": "1700000000"},
    )  # fmt: skip
    config = json.loads(run("skopeo", "inspect", "--config", f"oci-archive:{output}").stdout)
    assert config["created"] == "2023-11-14T22:13:20Z"
    layout = read_layout(output, tmp_path / "layout")
    manifest = blob(layout, manifest_digest(output))
    layer = layout / "blobs" / "sha256" / manifest["layers"][0]["digest"].removeprefix("sha256:")  # type: ignore[index]
    with tarfile.open(layer) as tar:
        assert {member.mtime for member in tar.getmembers()} == {1700000000}
