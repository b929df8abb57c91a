"""``pixi-unpack``: install a pack into ./env and write an activation script."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from .. import __version__
from ..config import load_config
from ..unpack.activation import SHELLS
from .common import run_reporting_errors, setup_logging, stderr
from .keys import trusted_keys

T = TypeVar("T")
#: The rich help's layout (``rich_variant``): metavars inside the help text, so the option column
#: fits --ignore-virtual-packages in 80 columns.
HELP_SETTINGS = {"show_metavars_column": False, "append_metavars_help": True}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("pack_file", required=False, type=click.Path(path_type=Path), default=Path("environment.tar"))
@click.option(
    "-o",
    "--output-directory",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder that receives the environment and the activation script.",
)
@click.option("-e", "--env-name", default="env", show_default=True, help="Name of the environment folder.")
@click.option(
    "-s",
    "--shell",
    type=click.Choice(sorted(SHELLS)),
    default=None,
    help="Shell of the activation script (default: bash on Unix, cmd on Windows).",
)
@click.option(
    "--environment",
    default=None,
    help="Environment to install from a pack of several (default: the only one).",
)
@click.option(
    "--all",
    "all_environments",
    is_flag=True,
    help="Install each environment of the pack into a folder of its name.",
)
@click.option("--force", is_flag=True, help="Replace an existing environment folder and activation script.")
@click.option(
    "--ignore-virtual-packages", is_flag=True, help="Install even if the host lacks glibc/cuda/... versions."
)
@click.option(
    "--run-post-link-scripts",
    is_flag=True,
    help="Run the packages' post-link scripts, as conda does (insecure: they run code from the pack).",
)
@click.option(
    "-k",
    "--trusted-key",
    "trusted_key",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Only unpack a pack signed by this OpenSSH public key (.pub; repeatable).",
)
@click.option(
    "-c",
    "--config",
    type=click.Path(path_type=Path),
    default=None,
    help='A pixi config.toml: run-post-link-scripts = "insecure", and trusted-keys (public keys).',
)
@click.option(
    "--compile-bytecode",
    is_flag=True,
    help="Compile the PyPI wheels' .py files to bytecode with the environment's python "
    "(runs the packed python; off by default: then nothing from the pack runs during the unpack).",
)
@click.option("-v", "--verbose", count=True, help="More output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.version_option(__version__, "-V", "--version", prog_name="pixi-unpack")
def unpack_command(
    pack_file: Path,
    output_directory: Path,
    env_name: str,
    shell: str | None,
    environment: str | None,
    all_environments: bool,
    force: bool,
    ignore_virtual_packages: bool,
    run_post_link_scripts: bool,
    trusted_key: tuple[Path, ...],
    config: Path | None,
    compile_bytecode: bool,
    verbose: int,
    quiet: bool,
) -> None:
    """Unpack PACK_FILE (default ./environment.tar, '-' for standard input, or a pack folder)."""
    from ..unpack.delta import unpack_or_apply  # here, not at the top: --help needs neither
    from ..unpack.driver import UnpackOptions

    setup_logging(verbose, quiet)
    keys = run_reporting_errors(lambda: trusted_keys(trusted_key, config)) if trusted_key or config else []
    options = UnpackOptions(
        pack=None if str(pack_file) == "-" else pack_file,
        output_directory=output_directory,
        env_name=env_name,
        shell=shell,
        force=force,
        ignore_virtual_packages=ignore_virtual_packages,
        compile_bytecode=compile_bytecode,
        show_progress=not quiet and stderr.is_terminal,
        environment=environment,
        run_post_link_scripts=run_post_link_scripts,
        trusted_keys=keys,
        # Set by a self-extracting script's header once ssh-keygen checked the manifest's signature.
        manifest_sha256=os.environ.get("PIXI_UNPACK_MANIFEST_SHA256") or None,
    )

    def configured(action: Callable[[UnpackOptions], T]) -> Callable[[], T]:
        """``action(options)`` once the config file (when given) has had its say."""

        def run() -> T:
            if config is not None and load_config(config).run_post_link_scripts:
                options.run_post_link_scripts = True
            return action(options)

        return run

    if all_environments:
        if environment is not None or env_name != "env":
            raise click.UsageError("--all names each folder after its environment; drop --environment and -e")
        from ..unpack.all_environments import unpack_all

        for prefix in run_reporting_errors(configured(unpack_all)):
            if not quiet:
                stderr.print(f"unpacked the environment into {prefix}")
        return
    prefix = run_reporting_errors(configured(unpack_or_apply))
    if not quiet:
        stderr.print(f"unpacked the environment into {prefix}")
