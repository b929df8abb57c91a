"""SSH signatures (``sshsig``, OpenSSH's PROTOCOL.sshsig), as ``ssh-keygen -Y sign`` writes them.

This module is only the wire encoding (the SSH string framing, the signed-data blob, the armor);
every signature is made and checked by ``cryptography``. A pack's manifest signed here verifies with
``ssh-keygen -Y verify -n pixi-pack``, and a signature made by ``ssh-keygen -Y sign -n pixi-pack``
verifies here. Keys: Ed25519, ECDSA (nistp256/384/521) and RSA (signed as ``rsa-sha2-512``).
Ed25519 and RSA signatures are deterministic, so the same manifest and key give the same bytes.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InvalidPackError, UsageError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

MAGIC = b"SSHSIG"
VERSION = 1
NAMESPACE = "pixi-pack"
BEGIN = "-----BEGIN SSH SIGNATURE-----"
END = "-----END SSH SIGNATURE-----"
#: The hash of the message the signer signs (ssh-keygen's default too); sha256 is read as well.
HASH = "sha512"
_HASHES = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}
#: The environment variable holding the passphrase of an encrypted private key.
PASSPHRASE_ENV = "PIXI_PACK_SIGNING_PASSPHRASE"
#: An armored signature is a few hundred bytes (RSA-16384 under 5 KiB); anything longer is refused.
MAX_SIGNATURE_TEXT = 64 << 10


class SignatureError(InvalidPackError):
    """A signature that is malformed, from an untrusted key, or does not match what it signs."""


def require_cryptography() -> None:
    """Signatures need ``cryptography``; the self-extracting scripts' bundled unpacker leaves it
    out (the script checks signatures with ``ssh-keygen`` instead)."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        raise UsageError(
            "checking or making signatures needs the 'cryptography' package, which this pixi-unpack "
            "lacks; check the pack with 'pixi-pack verify --trusted-key' (or 'sh environment.sh -k')"
        ) from None


# -- the SSH wire framing ---------------------------------------------------------------------------


def ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def ssh_mpint(value: int) -> bytes:
    """A non-negative integer as an SSH mpint (two's complement, big-endian, minimal length)."""
    if value == 0:
        return ssh_string(b"")
    data = value.to_bytes((value.bit_length() + 8) // 8, "big")  # one spare bit: never negative
    return ssh_string(data)


class Reader:
    """Reads SSH strings off a byte buffer; running past the end is a ``SignatureError``."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise SignatureError(f"{self.what} is truncated or malformed")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def string(self) -> bytes:
        return self.take(self.uint32())

    def mpint(self) -> int:
        data = self.string()
        if data and data[0] & 0x80:
            raise SignatureError(f"{self.what} holds a negative number")
        return int.from_bytes(data, "big")

    def end(self) -> None:
        if self.pos != len(self.data):
            raise SignatureError(f"{self.what} has trailing bytes")


def signed_data(message: bytes, namespace: str, hash_name: str) -> bytes:
    """The blob the key actually signs (PROTOCOL.sshsig): magic, namespace, reserved, hash, H(message)."""
    digest = _HASHES[hash_name](message).digest()
    return (
        MAGIC
        + ssh_string(namespace.encode())
        + ssh_string(b"")
        + ssh_string(hash_name.encode())
        + ssh_string(digest)
    )


# -- keys -----------------------------------------------------------------------------------------


def fingerprint(public_blob: bytes) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
    digest = base64.b64encode(hashlib.sha256(public_blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


@dataclass(frozen=True)
class PublicKey:
    """A public key as OpenSSH writes it: its wire blob (what signatures name) and where it came from."""

    blob: bytes
    source: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.blob)

    @property
    def key_type(self) -> str:
        return Reader(self.blob, "public key").string().decode("ascii", "replace")

    def openssh(self) -> str:
        """``type base64``: one line of an authorized_keys or allowed_signers file."""
        return f"{self.key_type} {base64.b64encode(self.blob).decode()}"

    def load(self) -> PublicKeyTypes:
        from cryptography.hazmat.primitives.serialization import load_ssh_public_key

        try:
            return load_ssh_public_key(self.openssh().encode())
        except (ValueError, TypeError) as exc:
            raise SignatureError(f"key {self.fingerprint} ({self.source}) cannot be used: {exc}") from None


def parse_public_key(text: str, source: str) -> PublicKey:
    """One OpenSSH public key (``ssh-ed25519 AAAA... comment``); ``source`` names it in errors."""
    require_cryptography()
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    fields = text.strip().split()
    if len(fields) < 2:
        raise UsageError(f"'{source}' is not an OpenSSH public key (expected 'ssh-ed25519 AAAA...')")
    try:
        load_ssh_public_key(f"{fields[0]} {fields[1]}".encode())
        blob = base64.b64decode(fields[1], validate=True)
    except (ValueError, TypeError, base64.binascii.Error) as exc:  # type: ignore[attr-defined]
        raise UsageError(f"'{source}' is not a usable OpenSSH public key: {exc}") from None
    return PublicKey(blob=blob, source=source)


def looks_like_key_text(value: str) -> bool:
    return value.startswith(("ssh-", "ecdsa-")) and " " in value.strip()


def read_public_key(value: str | Path) -> PublicKey:
    """A public key from a ``.pub`` file, or the key's own text (``ssh-ed25519 AAAA...``)."""
    if isinstance(value, str) and looks_like_key_text(value):
        return parse_public_key(value, value.split()[1][:16] + "...")
    path = Path(value).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(
            f"trusted key '{path}' does not exist; give an OpenSSH public key file (.pub)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"cannot read trusted key '{path}': {getattr(exc, 'strerror', None) or exc}"
        ) from None
    if "PRIVATE KEY" in text:
        raise UsageError(f"'{path}' is a private key; give its public half ({path}.pub)")
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if len(lines) != 1:
        raise UsageError(f"'{path}' must hold exactly one OpenSSH public key line")
    return parse_public_key(lines[0], str(path))


def load_private_key(path: Path) -> object:
    """The private key of an OpenSSH key file; an encrypted one needs its passphrase from
    ``$PIXI_PACK_SIGNING_PASSPHRASE`` or, on a terminal, a prompt."""
    require_cryptography()
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key

    try:
        data = Path(path).expanduser().read_bytes()
    except FileNotFoundError:
        raise UsageError(f"signing key '{path}' does not exist; give an OpenSSH private key file") from None
    except OSError as exc:
        raise UsageError(f"cannot read signing key '{path}': {exc.strerror}") from None
    if b"BEGIN OPENSSH PRIVATE KEY" not in data:
        raise UsageError(
            f"'{path}' is not an OpenSSH private key file (make one with 'ssh-keygen -t ed25519 -f KEY')"
        )
    passphrase = os.environ.get(PASSPHRASE_ENV)
    try:
        return load_ssh_private_key(data, passphrase.encode() if passphrase else None)
    except TypeError:  # encrypted, and no passphrase was given
        pass
    except ValueError as exc:
        if passphrase:  # cryptography says "broken checksum" for a wrong passphrase
            raise UsageError(f"the passphrase in ${PASSPHRASE_ENV} does not open '{path}'") from None
        raise UsageError(f"cannot use signing key '{path}': {exc}") from None
    if not sys.stdin.isatty():
        raise UsageError(f"signing key '{path}' is encrypted; set ${PASSPHRASE_ENV} to its passphrase")
    entered = getpass.getpass(f"passphrase for {path}: ")
    try:
        return load_ssh_private_key(data, entered.encode())
    except (ValueError, TypeError):
        raise UsageError(f"the passphrase does not open '{path}'") from None


# -- signing and verifying --------------------------------------------------------------------------


def _public_blob(key: object) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    line = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)  # type: ignore[attr-defined]
    return base64.b64decode(line.split()[1])


def _sign_blob(key: object, data: bytes) -> bytes:
    """The SSH signature blob (``string type, string signature``) of ``data`` by ``key``."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    if isinstance(key, ed25519.Ed25519PrivateKey):
        return ssh_string(b"ssh-ed25519") + ssh_string(key.sign(data))
    if isinstance(key, rsa.RSAPrivateKey):
        return ssh_string(b"rsa-sha2-512") + ssh_string(key.sign(data, padding.PKCS1v15(), hashes.SHA512()))
    if isinstance(key, ec.EllipticCurvePrivateKey):
        bits, hash_algorithm = _curve(key.curve.name)
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hash_algorithm())))
        name = f"ecdsa-sha2-nistp{bits}".encode()
        return ssh_string(name) + ssh_string(ssh_mpint(r) + ssh_mpint(s))
    raise UsageError(f"signing with a {type(key).__name__} is not supported; use an ed25519 key")


def _curve(name: str) -> tuple[int, type]:
    """The SSH curve size and signature hash of a cryptography curve name."""
    from cryptography.hazmat.primitives import hashes

    curves = {
        "secp256r1": (256, hashes.SHA256),
        "secp384r1": (384, hashes.SHA384),
        "secp521r1": (521, hashes.SHA512),
    }
    if name not in curves:
        raise UsageError(f"ECDSA keys on curve {name} are not supported; use an ed25519 key")
    return curves[name]


def armor(blob: bytes) -> str:
    body = base64.b64encode(blob).decode()
    lines = [body[i : i + 70] for i in range(0, len(body), 70)]
    return "\n".join([BEGIN, *lines, END]) + "\n"


def sign(message: bytes, key: object, namespace: str = NAMESPACE) -> str:
    """The armored sshsig of ``message`` (what ``ssh-keygen -Y sign -n NAMESPACE`` writes)."""
    blob = (
        MAGIC
        + struct.pack(">I", VERSION)
        + ssh_string(_public_blob(key))
        + ssh_string(namespace.encode())
        + ssh_string(b"")
        + ssh_string(HASH.encode())
        + ssh_string(_sign_blob(key, signed_data(message, namespace, HASH)))
    )
    return armor(blob)


@dataclass(frozen=True)
class Signature:
    """A parsed sshsig: who signed (their public key's blob), for what namespace, over which hash."""

    public_blob: bytes
    namespace: str
    hash_name: str
    signature: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_blob)


def parse(text: str | bytes, what: str = "the signature") -> Signature:
    """Parse an armored sshsig; anything malformed is a ``SignatureError`` naming ``what``."""
    if isinstance(text, bytes):
        if len(text) > MAX_SIGNATURE_TEXT:
            raise SignatureError(f"{what} is {len(text)} bytes long; an SSH signature is a few hundred")
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise SignatureError(f"{what} is not an armored SSH signature") from None
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) < 3 or lines[0] != BEGIN or lines[-1] != END:
        raise SignatureError(f"{what} is not an armored SSH signature ({BEGIN} ... {END})")
    try:
        blob = base64.b64decode("".join(lines[1:-1]), validate=True)
    except ValueError:
        raise SignatureError(f"{what} is not valid base64") from None
    reader = Reader(blob, what)
    if reader.take(6) != MAGIC:
        raise SignatureError(f"{what} is not an SSH signature (no SSHSIG preamble)")
    version = reader.uint32()
    if version != VERSION:
        raise SignatureError(f"{what} has SSH signature version {version}; version {VERSION} is read")
    public_blob = reader.string()
    namespace = reader.string().decode("utf-8", "replace")
    reader.string()  # reserved
    hash_name = reader.string().decode("ascii", "replace")
    signature = reader.string()
    reader.end()
    if hash_name not in _HASHES:
        raise SignatureError(f"{what} uses hash '{hash_name}'; sha256 or sha512 is read")
    return Signature(public_blob=public_blob, namespace=namespace, hash_name=hash_name, signature=signature)


def _check(key: PublicKey, sig: Signature, data: bytes, what: str) -> bool:
    """Whether ``sig.signature`` (a SSH signature blob) is ``key``'s signature of ``data``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    reader = Reader(sig.signature, what)
    kind = reader.string().decode("ascii", "replace")
    raw = reader.string()
    reader.end()
    public = key.load()
    try:
        if isinstance(public, ed25519.Ed25519PublicKey) and kind == "ssh-ed25519":
            public.verify(raw, data)
        elif isinstance(public, rsa.RSAPublicKey) and kind in ("rsa-sha2-512", "rsa-sha2-256"):
            algorithm = hashes.SHA512() if kind == "rsa-sha2-512" else hashes.SHA256()
            public.verify(raw, data, padding.PKCS1v15(), algorithm)
        elif isinstance(public, ec.EllipticCurvePublicKey) and kind.startswith("ecdsa-sha2-nistp"):
            bits, hash_algorithm = _curve(public.curve.name)
            if kind != f"ecdsa-sha2-nistp{bits}":
                return False
            numbers = Reader(raw, what)
            r, s = numbers.mpint(), numbers.mpint()
            numbers.end()
            public.verify(encode_dss_signature(r, s), data, ec.ECDSA(hash_algorithm()))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def verify(
    message: bytes,
    text: str | bytes,
    trusted: list[PublicKey],
    *,
    namespace: str = NAMESPACE,
    what: str = "the signature",
    signed: str = "the message",
) -> PublicKey:
    """Check that ``text`` is a signature of ``message`` by one of ``trusted``; return that key.

    Refusals name the key the signature carries (its ``SHA256:`` fingerprint)."""
    sig = parse(text, what)
    if sig.namespace != namespace:
        raise SignatureError(f"{what} is for namespace '{sig.namespace}', not '{namespace}'")
    key = next((k for k in trusted if k.blob == sig.public_blob), None)
    if key is None:
        raise SignatureError(
            f"{signed} is signed by key {sig.fingerprint}, which is not a trusted key "
            f"(trusted: {', '.join(k.fingerprint for k in trusted) or 'none'})"
        )
    if not _check(key, sig, signed_data(message, namespace, sig.hash_name), what):
        raise SignatureError(
            f"{what} (key {sig.fingerprint}) does not match {signed}: it was changed after signing, "
            "or the signature is of another one"
        )
    return key
