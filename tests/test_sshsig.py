"""sshsig interoperability: our signatures verify with OpenSSH's ``ssh-keygen -Y verify``, and
``ssh-keygen -Y sign``'s verify with ours, for every key type we sign with."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pixi_pack_ext.errors import UsageError
from pixi_pack_ext.sshsig import (
    PASSPHRASE_ENV,
    SignatureError,
    load_private_key,
    parse,
    read_public_key,
    sign,
    verify,
)

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
KEY_TYPES = [("ed25519", []), ("ecdsa", ["-b", "256"]), ("ecdsa", ["-b", "521"]), ("rsa", ["-b", "2048"])]
MESSAGE = b'{"files": {}}\n' * 50


def keygen(folder: Path, kind: str, extra: list[str], name: str = "key", passphrase: str = "") -> Path:
    key = folder / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, *extra, "-N", passphrase, "-C", "", "-f", str(key)], check=True
    )
    return key


def ssh_verify(folder: Path, pub: Path, message: bytes, signature: str) -> subprocess.CompletedProcess[bytes]:
    allowed = folder / "allowed_signers"
    allowed.write_text(f'signer namespaces="pixi-pack" {pub.read_text().strip()}\n')
    (folder / "msg.sig").write_text(signature)
    return subprocess.run(
        [
            "ssh-keygen",
            "-Y",
            "verify",
            "-f",
            str(allowed),
            "-I",
            "signer",
            "-n",
            "pixi-pack",
            "-s",
            str(folder / "msg.sig"),
        ],
        input=message,
        capture_output=True,
    )


@pytest.mark.parametrize(("kind", "extra"), KEY_TYPES, ids=[f"{k}{''.join(e)}" for k, e in KEY_TYPES])
def test_our_signature_verifies_with_ssh_keygen(tmp_path: Path, kind: str, extra: list[str]) -> None:
    key = keygen(tmp_path, kind, extra)
    signature = sign(MESSAGE, load_private_key(key))
    result = ssh_verify(tmp_path, key.with_suffix(".pub"), MESSAGE, signature)
    assert result.returncode == 0, result.stderr
    assert b"Good" in result.stdout + result.stderr
    # and a changed message does not
    assert ssh_verify(tmp_path, key.with_suffix(".pub"), MESSAGE + b" ", signature).returncode != 0


@pytest.mark.parametrize(("kind", "extra"), KEY_TYPES, ids=[f"{k}{''.join(e)}" for k, e in KEY_TYPES])
def test_ssh_keygen_signature_verifies_with_ours(tmp_path: Path, kind: str, extra: list[str]) -> None:
    key = keygen(tmp_path, kind, extra)
    (tmp_path / "msg").write_bytes(MESSAGE)
    subprocess.run(
        ["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", "pixi-pack", str(tmp_path / "msg")],
        check=True,
    )
    signature = (tmp_path / "msg.sig").read_text()
    trusted = read_public_key(key.with_suffix(".pub"))
    assert verify(MESSAGE, signature, [trusted]) == trusted
    with pytest.raises(SignatureError, match="does not match"):
        verify(MESSAGE + b"x", signature, [trusted])


def test_fingerprint_is_the_one_ssh_keygen_prints(tmp_path: Path) -> None:
    key = keygen(tmp_path, "ed25519", [])
    printed = subprocess.run(
        ["ssh-keygen", "-lf", str(key.with_suffix(".pub"))], capture_output=True, check=True
    )
    assert read_public_key(key.with_suffix(".pub")).fingerprint == printed.stdout.split()[1].decode()


def test_ed25519_signatures_are_deterministic(tmp_path: Path) -> None:
    key = load_private_key(keygen(tmp_path, "ed25519", []))
    assert sign(MESSAGE, key) == sign(MESSAGE, key)


def test_unknown_key_and_other_namespace_are_refused_naming_the_key(tmp_path: Path) -> None:
    signer = keygen(tmp_path, "ed25519", [], "signer")
    other = read_public_key(keygen(tmp_path, "ed25519", [], "other").with_suffix(".pub"))
    signature = sign(MESSAGE, load_private_key(signer))
    found = read_public_key(signer.with_suffix(".pub")).fingerprint
    with pytest.raises(
        SignatureError, match=f"signed by key {found.replace('+', '.')}, which is not a trusted"
    ):
        verify(MESSAGE, signature, [other])
    with pytest.raises(SignatureError, match="namespace 'pixi-pack', not 'git'"):
        verify(MESSAGE, signature, [other], namespace="git")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-----BEGIN SSH SIGNATURE-----\n!!!\n-----END SSH SIGNATURE-----\n",
        "-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n",  # "SSHSIG" and nothing more
        "-----BEGIN SSH SIGNATURE-----\nQUJDREVGAAAAAQ==\n-----END SSH SIGNATURE-----\n",  # wrong magic
    ],
)
def test_malformed_signatures_are_one_line_errors(text: str) -> None:
    with pytest.raises(SignatureError) as info:
        parse(text)
    assert "\n" not in str(info.value)


def test_encrypted_key_needs_its_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = keygen(tmp_path, "ed25519", [], passphrase="s3cret-phrase")
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(UsageError, match=f"encrypted; set \\${PASSPHRASE_ENV}"):
        load_private_key(key)
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    with pytest.raises(UsageError, match="does not open"):
        load_private_key(key)
    monkeypatch.setenv(PASSPHRASE_ENV, "s3cret-phrase")
    signature = sign(MESSAGE, load_private_key(key))
    assert ssh_verify(tmp_path, key.with_suffix(".pub"), MESSAGE, signature).returncode == 0


def test_a_private_key_given_as_trusted_key_is_refused(tmp_path: Path) -> None:
    key = keygen(tmp_path, "ed25519", [])
    with pytest.raises(UsageError, match="is a private key; give its public half"):
        read_public_key(key)


def test_without_cryptography_a_trusted_key_is_a_one_line_error(tmp_path: Path) -> None:
    """The self-extracting scripts' bundled unpacker has no cryptography: -k there is the script's."""
    pub = keygen(tmp_path, "ed25519", []).with_suffix(".pub")
    code = (
        "import sys; sys.modules['cryptography'] = None; sys.argv = ['pixi-unpack', 'x.tar', '-k', sys.argv[1]];"
        "from pixi_pack_ext.cli.main import pixi_unpack; pixi_unpack()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(pub)], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert "needs the 'cryptography' package" in result.stderr and "Traceback" not in result.stderr
