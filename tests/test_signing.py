"""Signed packs: the manifest, its sshsig, ``--trusted-key``, ``pixi-pack verify`` and hostile packs.

Every refusal is one line, and nothing is left where the environment would have gone."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import needs_linux64, pack_prod, run
from selfextract.helpers import needs_system_python

from pixi_pack_ext.archive import write_tar
from pixi_pack_ext.manifest import MANIFEST_FILE, SIGNATURE_FILE
from pixi_pack_ext.sshsig import load_private_key, read_public_key, sign

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")


def keygen(folder: Path, name: str) -> Path:
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    keygen(folder, "team")
    keygen(folder, "other")
    return folder


@pytest.fixture(scope="module")
def signed(workspace: Path, keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("signed") / "environment.tar"
    pack_prod(workspace, out, "--sign", keys / "team")
    return out


def members(pack: Path) -> dict[str, bytes]:
    with tarfile.open(pack) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def rewrite(pack: Path, out: Path, change: dict[str, bytes | None]) -> Path:
    """A copy of the tar ``pack`` with files replaced, added or (None) removed, written as pixi-pack writes."""
    folder = out.with_suffix(".d")
    with tarfile.open(pack) as tar:
        tar.extractall(folder, filter="data")
    for name, data in change.items():
        if data is None:
            (folder / name).unlink()
        else:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
    with open(out, "wb") as f:
        write_tar(folder, f)
    shutil.rmtree(folder)
    return out


def unpack(
    pack: Path, target: Path, *keys: Path, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    flags = [arg for key in keys for arg in ("-k", str(key))]
    return run(
        "pixi-unpack", "-" if stdin is not None else pack, "-o", target, *flags, input=stdin, check=False
    )


def refused(result: subprocess.CompletedProcess[bytes], target: Path, message: str) -> None:
    err = result.stderr.decode()
    assert result.returncode != 0, err
    assert message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not target.exists(), "something was left where the environment would go"


def test_signed_pack_is_reproducible_and_checks_with_ssh_keygen(
    signed: Path, workspace: Path, keys: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again.tar"
    pack_prod(workspace, again, "--sign", keys / "team")
    assert again.read_bytes() == signed.read_bytes()
    with tarfile.open(signed) as tar:
        assert [m.name for m in tar.getmembers()[:2]] == [MANIFEST_FILE, SIGNATURE_FILE]
    files = members(signed)
    manifest = json.loads(files[MANIFEST_FILE])
    listed = set(manifest["files"])
    assert listed == set(files) - {MANIFEST_FILE, SIGNATURE_FILE}
    assert {"pixi-pack.json", "environment.yml", "sbom.cdx.json"} <= listed
    for name, entry in manifest["files"].items():
        assert entry["size"] == len(files[name])
    # OpenSSH itself checks the manifest with the team's key
    (tmp_path / "m.json").write_bytes(files[MANIFEST_FILE])
    (tmp_path / "m.json.sig").write_bytes(files[SIGNATURE_FILE])
    (tmp_path / "allowed").write_text(f'team namespaces="pixi-pack" {(keys / "team.pub").read_text()}')
    checked = subprocess.run(
        [
            "ssh-keygen",
            "-Y",
            "verify",
            "-f",
            tmp_path / "allowed",
            "-I",
            "team",
            "-n",
            "pixi-pack",
            "-s",
            tmp_path / "m.json.sig",
        ],
        input=files[MANIFEST_FILE],
        capture_output=True,
    )
    assert checked.returncode == 0, checked.stderr


def test_trusted_key_unpacks_and_the_environment_runs(signed: Path, keys: Path, tmp_path: Path) -> None:
    result = unpack(signed, tmp_path / "out", keys / "team.pub")
    assert result.returncode == 0, result.stderr
    hello = subprocess.run([tmp_path / "out" / "env" / "bin" / "hello"], capture_output=True, text=True)
    assert hello.stdout.startswith("hello-bin prefix=")


def test_another_key_is_refused_naming_the_key_found(signed: Path, keys: Path, tmp_path: Path) -> None:
    found = read_public_key(keys / "team.pub").fingerprint
    refused(unpack(signed, tmp_path / "out", keys / "other.pub"), tmp_path / "out", f"signed by key {found}")


def test_unsigned_pack_is_refused_with_a_trusted_key(prod_tar: Path, keys: Path, tmp_path: Path) -> None:
    refused(unpack(prod_tar, tmp_path / "out", keys / "team.pub"), tmp_path / "out", "the pack is not signed")


def test_signature_is_checked_before_the_rest_of_the_stream_is_read(
    signed: Path, keys: Path, tmp_path: Path
) -> None:
    """Signed by another key, and everything after the signature is garbage: the refusal is the
    signature's, so nothing after it was read (let alone extracted)."""
    data = signed.read_bytes()
    with tarfile.open(signed) as tar:
        second = tar.getmembers()[1]
    end = second.offset_data + (second.size + 511) // 512 * 512
    garbage = data[:end] + b"\x07" * 4096
    refused(
        unpack(signed, tmp_path / "out", keys / "other.pub", stdin=garbage), tmp_path / "out", "signed by key"
    )


def test_signature_of_another_manifest_is_refused(signed: Path, keys: Path, tmp_path: Path) -> None:
    files = members(signed)
    other_manifest = files[MANIFEST_FILE] + b" "  # the same manifest in other bytes
    forged = rewrite(
        signed,
        tmp_path / "forged.tar",
        {SIGNATURE_FILE: sign(other_manifest, load_private_key(keys / "team")).encode()},
    )
    refused(
        unpack(forged, tmp_path / "out", keys / "team.pub"), tmp_path / "out", "does not match the pack's"
    )


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted-key", "no-key"])
def test_a_file_added_after_signing_is_refused(
    signed: Path, keys: Path, tmp_path: Path, trusted: bool
) -> None:
    added = rewrite(signed, tmp_path / "added.tar", {"channel/noarch/evil.txt": b"#!/bin/sh\n"})
    flags = [keys / "team.pub"] if trusted else []
    refused(
        unpack(added, tmp_path / "out", *flags),
        tmp_path / "out",
        "which its pixi-pack-manifest.json does not list",
    )


def _with_folder(pack: Path, out: Path, folder: str, first: bool) -> Path:
    """``pack`` with an empty folder member added at its start or its end (the files unchanged)."""
    with tarfile.open(pack) as tar:
        entries = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]  # type: ignore[union-attr]
    extra = tarfile.TarInfo(folder)
    extra.type, extra.mode = tarfile.DIRTYPE, 0o755
    entries.insert(0 if first else len(entries), (extra, None))
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out


@pytest.mark.parametrize(
    ("folder", "first", "message"),
    [
        ("zzz", True, "the pack is not signed"),
        ("channel/win-64", False, "holds no file its pixi-pack-manifest.json lists"),
        ("channel/linux-64/evil-1-0.conda", False, "holds no file its pixi-pack-manifest.json lists"),
    ],
    ids=["before-the-manifest", "unlisted-subdir", "named-like-a-package"],
)
def test_a_folder_added_after_signing_is_refused(
    signed: Path, keys: Path, tmp_path: Path, folder: str, first: bool, message: str
) -> None:
    """A folder is not in the manifest: one that holds no listed file (or comes before the manifest)
    is a change made after signing, refused by unpack and by verify before anything is made."""
    parent = tmp_path / "parent"
    parent.mkdir()
    changed = _with_folder(signed, tmp_path / "changed.tar", folder, first)
    refused(unpack(changed, parent / "out", keys / "team.pub"), parent / "out", message)
    assert list(parent.iterdir()) == []
    result = run("pixi-pack", "verify", changed, "--trusted-key", keys / "team.pub", check=False)
    err = result.stderr.decode()
    assert result.returncode != 0 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted-key", "no-key"])
def test_a_file_changed_after_signing_is_refused(
    signed: Path, keys: Path, tmp_path: Path, trusted: bool
) -> None:
    files = members(signed)
    same_size = files["environment.yml"].replace(b"nodefaults", b"nodefaultX")
    changed = rewrite(signed, tmp_path / "changed.tar", {"environment.yml": same_size})
    flags = [keys / "team.pub"] if trusted else []
    refused(unpack(changed, tmp_path / "out", *flags), tmp_path / "out", "'environment.yml' does not match")


def test_a_changed_package_and_repodata_are_refused(signed: Path, keys: Path, tmp_path: Path) -> None:
    """The attacker rewrites a package and its repodata.json sha256 consistently: the manifest catches it."""
    files = members(signed)
    name = next(n for n in files if n.endswith(".conda"))
    repodata_name = name.rsplit("/", 1)[0] + "/repodata.json"
    body = bytearray(files[name])
    body[len(body) // 2] ^= 0xFF
    import hashlib

    old, new = hashlib.sha256(files[name]).hexdigest(), hashlib.sha256(body).hexdigest()
    changed = rewrite(
        signed,
        tmp_path / "changed.tar",
        {name: bytes(body), repodata_name: files[repodata_name].replace(old.encode(), new.encode())},
    )
    refused(unpack(changed, tmp_path / "out", keys / "team.pub"), tmp_path / "out", "does not match")


@pytest.mark.parametrize("path", ["../x", "/etc/x", "channel/../../x"])
def test_a_signed_manifest_listing_a_path_outside_the_pack_is_refused(
    signed: Path, keys: Path, tmp_path: Path, path: str
) -> None:
    files = members(signed)
    manifest = json.loads(files[MANIFEST_FILE])
    manifest["files"][path] = {"size": 1, "sha256": "0" * 64}
    data = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    hostile = rewrite(
        signed,
        tmp_path / "hostile.tar",
        {MANIFEST_FILE: data, SIGNATURE_FILE: sign(data, load_private_key(keys / "team")).encode()},
    )
    refused(unpack(hostile, tmp_path / "out", keys / "team.pub"), tmp_path / "out", "a path outside the pack")
    assert not (tmp_path / "x").exists()


def test_a_revoked_key_is_one_no_longer_trusted(signed: Path, keys: Path, tmp_path: Path) -> None:
    """Revoking = removing the key from the trusted list (config): its packs are refused from then on."""
    config = tmp_path / "config.toml"
    config.write_text(f'trusted-keys = ["{keys / "team.pub"}", "{keys / "other.pub"}"]\n')
    result = run("pixi-pack", "verify", signed, "-c", config)
    assert "signed by trusted key" in result.stderr.decode()
    config.write_text(f'trusted-keys = ["{keys / "other.pub"}"]\n')
    refused(
        run("pixi-unpack", signed, "-o", tmp_path / "out", "-c", config, check=False),
        tmp_path / "out",
        "which is not a trusted key",
    )


def test_pixi_pack_verify(signed: Path, prod_tar: Path, keys: Path, tmp_path: Path) -> None:
    found = read_public_key(keys / "team.pub").fingerprint
    ok = run("pixi-pack", "verify", signed, "--trusted-key", keys / "team.pub")
    assert f"signed by trusted key {found}" in ok.stderr.decode()
    unchecked = run("pixi-pack", "verify", signed)
    assert f"signed by key {found} (not checked" in unchecked.stderr.decode()
    assert "not signed" in run("pixi-pack", "verify", prod_tar).stderr.decode()
    bad = run("pixi-pack", "verify", signed, "-k", keys / "other.pub", check=False)
    assert bad.returncode == 1 and f"signed by key {found}" in bad.stderr.decode()
    tampered = rewrite(
        signed, tmp_path / "t.tar", {"pixi-pack.json": members(signed)["pixi-pack.json"] + b" "}
    )
    bad = run("pixi-pack", "verify", tampered, "-k", keys / "team.pub", check=False)
    assert bad.returncode == 1 and "'pixi-pack.json' has" in bad.stderr.decode()


def test_pack_refuses_a_missing_or_encrypted_key_in_one_line(
    workspace: Path, keys: Path, tmp_path: Path
) -> None:
    result = pack_prod(workspace, tmp_path / "p.tar", "--sign", tmp_path / "nope", check=False)
    assert result.returncode == 2 and b"signing key" in result.stderr and b"Traceback" not in result.stderr
    locked = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pass phrase", "-f", str(locked)], check=True)
    result = pack_prod(
        workspace, tmp_path / "p.tar", "--sign", locked, check=False, env={"PIXI_PACK_SIGNING_PASSPHRASE": ""}
    )
    assert result.returncode == 2 and b"is encrypted" in result.stderr
    assert not (tmp_path / "p.tar").exists()


def test_unpack_start_up_imports_no_crypto_or_sbom_library() -> None:
    code = (
        "import sys, pixi_pack_ext.cli.unpack, pixi_pack_ext.unpack;"
        "print([m for m in sys.modules if m.split('.')[0] in ('cryptography', 'cyclonedx')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_directory_pack_is_checked_in_place(workspace: Path, keys: Path, tmp_path: Path) -> None:
    folder = tmp_path / "packdir"
    pack_prod(workspace, folder, "--directory-only", "--sign", keys / "team")
    (folder / "environment.yml").write_text(
        (folder / "environment.yml").read_text().replace("nodefaults", "nodefaultX")
    )
    refused(unpack(folder, tmp_path / "out", keys / "team.pub"), tmp_path / "out", "does not match")


@pytest.fixture(scope="module")
def signed_sh(workspace: Path, keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("signed-sh") / "environment.sh"
    pack_prod(workspace, out, "--create-executable", "--sign", keys / "team", timeout=600)
    return out


def run_sh(
    script: Path, tmp_path: Path, *args: object, path: str = "/usr/bin:/bin"
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "tmpdir").mkdir(exist_ok=True)
    env = {"PATH": path, "HOME": str(tmp_path), "TMPDIR": str(tmp_path / "tmpdir"), "LC_ALL": "C"}
    return subprocess.run(
        ["sh", script, *map(str, args)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )


@needs_linux64
@needs_system_python
def test_self_extracting_script_checks_the_signature_with_ssh_keygen(
    signed_sh: Path, keys: Path, tmp_path: Path
) -> None:
    good = run_sh(signed_sh, tmp_path, "-o", tmp_path / "good", "-k", keys / "team.pub")
    assert good.returncode == 0, good.stderr
    assert 'Good "pixi-pack" signature' in good.stderr
    assert (tmp_path / "good" / "env" / "bin" / "hello").exists()
    assert run("pixi-pack", "verify", signed_sh, "-k", keys / "team.pub").returncode == 0

    bad = run_sh(signed_sh, tmp_path, "-o", tmp_path / "bad", "--trusted-key", keys / "other.pub")
    assert bad.returncode == 1 and "does not verify with the trusted key" in bad.stderr, bad.stderr
    assert not (tmp_path / "bad").exists()
    assert not list((tmp_path / "tmpdir").iterdir())


@needs_linux64
def test_self_extracting_refusal_runs_nothing_from_the_payload(
    signed_sh: Path, keys: Path, tmp_path: Path
) -> None:
    """No python3 on PATH: a good key passes the check and then needs Python; a wrong key is refused
    by the header alone (the unpacker never starts)."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in (
        "sh",
        "wc",
        "tr",
        "mktemp",
        "rm",
        "uname",
        "tail",
        "head",
        "grep",
        "sed",
        "cat",
        "printf",
        "ssh-keygen",
        "sha256sum",
        "awk",
    ):
        found = shutil.which(tool, path="/usr/bin:/bin")
        if found:
            (tools / tool).symlink_to(found)
    bad = run_sh(signed_sh, tmp_path, "-o", tmp_path / "bad", "-k", keys / "other.pub", path=str(tools))
    assert bad.returncode == 1 and "does not verify with the trusted key" in bad.stderr, bad.stderr
    good = run_sh(signed_sh, tmp_path, "-o", tmp_path / "good", "-k", keys / "team.pub", path=str(tools))
    assert good.returncode == 1 and "needs python3" in good.stderr, good.stderr
    (tools / "ssh-keygen").unlink()
    missing = run_sh(signed_sh, tmp_path, "-o", tmp_path / "x", "-k", keys / "team.pub", path=str(tools))
    assert missing.returncode == 1 and "needs ssh-keygen" in missing.stderr, missing.stderr


@needs_linux64
def test_self_extracting_other_key_or_unsigned_is_refused(
    signed_sh: Path, workspace: Path, keys: Path, tmp_path: Path
) -> None:
    """A script signed by another key, and an unsigned one: both refused before the unpacker runs."""
    other = tmp_path / "other.sh"
    pack_prod(workspace, other, "--create-executable", "--sign", keys / "other", timeout=600)
    bad = run_sh(other, tmp_path, "-o", tmp_path / "bad", "-k", keys / "team.pub")
    assert bad.returncode == 1 and "does not verify" in bad.stderr
    unsigned = tmp_path / "unsigned.sh"
    pack_prod(workspace, unsigned, "--create-executable", timeout=600)
    bad = run_sh(unsigned, tmp_path, "-o", tmp_path / "bad", "-k", keys / "team.pub")
    assert bad.returncode == 1 and "the pack is not signed" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_verify_refuses_a_script_whose_unpacker_was_replaced(
    signed_sh: Path, keys: Path, tmp_path: Path
) -> None:
    """The signed manifest names the unpacker's sha256: a changed unpacker fails ``pixi-pack verify``
    even when the header's own sha256 is changed to match it."""
    from pixi_pack_ext.selfextract.reader import read_layout, region_sha256

    layout = read_layout(signed_sh)
    assert layout is not None and layout.unpacker_sha256 is not None
    data = bytearray(signed_sh.read_bytes())
    end = layout.unpacker_offset + layout.unpacker_size
    data[end - 100] ^= 0xFF  # inside the zip's central directory, in the part the header checks
    changed = tmp_path / "changed.sh"
    changed.write_bytes(bytes(data))
    with open(changed, "rb") as f:
        new_sha = region_sha256(f, layout.unpacker_check_offset, end - layout.unpacker_check_offset)
    assert new_sha is not None
    changed.write_bytes(
        bytes(data).replace(layout.unpacker_sha256.encode(), new_sha.encode(), 1)
    )  # the header
    bad = run("pixi-pack", "verify", changed, "-k", keys / "team.pub", check=False)
    assert bad.returncode == 1 and "is not the one pixi-pack-manifest.json lists" in bad.stderr.decode()
    script = run_sh(changed, tmp_path, "-o", tmp_path / "out", "-k", keys / "team.pub")
    assert script.returncode == 1 and "does not cover this file's unpacker" in script.stderr, script.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('trusted-keys = "team.pub"\n', "'trusted-keys' in"),
        ("trusted-keys = [1]\n", "'trusted-keys[0]' in"),
        ('trusted-keys = ["missing.pub"]\n', "missing.pub' does not exist"),
        ('trusted-keys = ["ssh-ed25519 AAAAnot-base64"]\n', "is not a usable OpenSSH public key"),
    ],
)
def test_bad_trusted_keys_config_is_one_line(signed: Path, tmp_path: Path, config: str, message: str) -> None:
    (tmp_path / "config.toml").write_text(config)
    result = run("pixi-unpack", signed, "-o", tmp_path / "out", "-c", tmp_path / "config.toml", check=False)
    refused(result, tmp_path / "out", message)


def test_verify_refuses_a_script_whose_header_was_changed(
    signed_sh: Path, keys: Path, tmp_path: Path
) -> None:
    """The header is shell code no signature covers: one line of it replaced by a command of the
    same length (the offsets and sha256s left as they were) is refused by ``pixi-pack verify``."""
    data = bytearray(signed_sh.read_bytes())
    start = data.index(b"# The bundled unpacker, a zipapp")
    end = data.index(b"\n", start)
    marker = tmp_path / "header-ran"
    command = f"touch '{marker}' #".encode()
    data[start:end] = command.ljust(end - start, b"x")
    changed = tmp_path / "changed.sh"
    changed.write_bytes(bytes(data))
    result = run("pixi-pack", "verify", changed, "--trusted-key", keys / "team.pub", check=False)
    err = result.stderr.decode()
    assert result.returncode != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "self-extracting header" in err and "was changed" in err, err
    assert not marker.exists()
    good = run("pixi-pack", "verify", signed_sh, "--trusted-key", keys / "team.pub")
    assert good.returncode == 0
