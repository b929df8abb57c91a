"""``pixi-pack verify PACK`` and ``pixi-pack sbom PACK``: check or read a pack without installing it."""

from __future__ import annotations

import sys
from pathlib import Path

import rich_click as click

from ..errors import InvalidPackError
from .common import run_reporting_errors, setup_logging, stderr
from .keys import trusted_keys

TRUSTED_KEY_HELP = "An OpenSSH public key file (.pub) whose signature is accepted (repeatable)."


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("pack", type=click.Path(path_type=Path))
@click.option(
    "-k", "--trusted-key", "keys", multiple=True, type=click.Path(path_type=Path), help=TRUSTED_KEY_HELP
)
@click.option(
    "-c", "--config", type=click.Path(path_type=Path), default=None, help="A config.toml with 'trusted-keys'."
)
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
def verify_command(pack: Path, keys: tuple[Path, ...], config: Path | None, quiet: bool) -> None:
    """Check PACK (a tar, a self-extracting .sh or a pack folder) against its manifest and, given
    trusted keys, its signature, without installing anything."""
    setup_logging(0, quiet)

    def check() -> str:
        from ..unpack.verify import verify_pack

        trusted = trusted_keys(keys, config)
        result = verify_pack(pack, trusted)
        if result.trusted is not None:
            return f"{pack}: {result.files} files match the manifest, signed by trusted key {result.trusted.fingerprint}"
        if result.signer is not None:
            return (
                f"{pack}: {result.files} files match the manifest, signed by key {result.signer} "
                "(not checked: give --trusted-key)"
            )
        return f"{pack}: {result.files} files match the manifest; the pack is not signed"

    message = run_reporting_errors(check)
    if not quiet:
        stderr.print(message, markup=False, highlight=False, soft_wrap=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("pack", type=click.Path(path_type=Path))
def sbom_command(pack: Path) -> None:
    """Print the CycloneDX (JSON) SBOM that PACK carries."""
    setup_logging(0, False)

    def read() -> bytes:
        from ..pack.sbom import SBOM_FILE
        from ..unpack.verify import read_member

        data = read_member(pack, SBOM_FILE)
        if data is None:
            raise InvalidPackError(f"'{pack}' carries no {SBOM_FILE}; it was made before packs carried one")
        return data

    data = run_reporting_errors(read)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
