"""``pixi-pack``: pack one environment of a pixi workspace for one platform."""

from __future__ import annotations

from pathlib import Path

import click

from .. import __version__
from .common import progress_for, run_reporting_errors, setup_logging, stderr
from .completers import complete_environment, complete_manifest, complete_platform
from .format_options import META_KEY, format_options_for


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Commands: 'pixi-pack plugins' lists the loaded plugins; 'pixi-pack completion -s SHELL' "
    "prints a shell completion script. A workspace folder named plugins or completion (holding a "
    "pixi.toml or pyproject.toml) is packed instead; './plugins' always names the folder.",
)
@click.argument(
    "manifest_path",
    required=False,
    type=click.Path(path_type=Path),
    default=Path("."),
    shell_complete=complete_manifest,
)
@click.option(
    "-e",
    "--environment",
    "environments",
    multiple=True,
    default=("default",),
    show_default=True,
    help="Environment of the lock to pack (repeat it for a pack of several).",
    shell_complete=complete_environment,
)
@click.option(
    "-p",
    "--platform",
    "platforms",
    multiple=True,
    help="Platform to pack for (default: this machine's; repeat it for a pack of several).",
    shell_complete=complete_platform,
)
@click.option(
    "-o",
    "--output-file",
    "output",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the pack; '-' writes the tar to standard output.",
)
@click.option("--format", "format_name", default=None, help="Output format (see 'pixi-pack plugins').")
@click.option(
    "--format-option",
    "format_option",
    multiple=True,
    metavar="NAME=VALUE",
    help="A setting of the chosen format (repeatable); formats also offer theirs as --NAME VALUE.",
)
@click.option("--directory-only", is_flag=True, help="Write the pack as a folder instead of a tar.")
@click.option("--create-executable", is_flag=True, help="Write a self-extracting environment.sh / .ps1.")
@click.option(
    "--pixi-unpack-source",
    default=None,
    help="Path or URL of the pixi-unpack executable to embed in --create-executable output.",
)
@click.option(
    "--use-cache",
    type=click.Path(path_type=Path),
    default=None,
    help="Package cache folder (channel layout).",
)
@click.option(
    "-i", "--inject", multiple=True, type=click.Path(path_type=Path), help="Add a .conda/.tar.bz2/.whl file."
)
@click.option("--ignore-pypi-non-wheel", is_flag=True, help="Skip PyPI packages that are not wheels.")
@click.option(
    "-c", "--config", type=click.Path(path_type=Path), default=None, help="A pixi/rattler config.toml."
)
@click.option(
    "--auth-file", type=click.Path(path_type=Path), default=None, help="A rattler auth file (JSON)."
)
@click.option(
    "--prefix", type=click.Path(path_type=Path), default=None, help="Pack an installed environment."
)
@click.option(
    "--manifest",
    "prefix_manifest",
    type=click.Path(path_type=Path),
    default=None,
    help="With --prefix: the workspace (pixi.toml, pyproject.toml or folder) whose [activation] of -e to pack.",
)
@click.option(
    "--wheel-dir", multiple=True, type=click.Path(path_type=Path), help="Where --prefix finds wheels."
)
@click.option(
    "--since",
    type=click.Path(path_type=Path),
    default=None,
    help="Write a delta pack: only what this earlier pack, pixi.lock or installed environment lacks.",
)
@click.option("--concurrent-downloads", type=int, default=None, help="Downloads at a time (default 50).")
@click.option(
    "--sign",
    "sign_key",
    type=click.Path(path_type=Path),
    default=None,
    metavar="KEY",
    help="Sign the pack's manifest with this OpenSSH private key (ed25519); see 'pixi-pack verify'.",
)
@click.option("--list-plugins", is_flag=True, help="List the loaded plugins and exit.")
@click.option("-v", "--verbose", count=True, help="More output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.version_option(__version__, "-V", "--version", prog_name="pixi-pack")
def pack_command(
    manifest_path: Path,
    environments: tuple[str, ...],
    platforms: tuple[str, ...],
    output: Path | None,
    format_name: str | None,
    format_option: tuple[str, ...],
    directory_only: bool,
    create_executable: bool,
    pixi_unpack_source: str | None,
    use_cache: Path | None,
    inject: tuple[Path, ...],
    ignore_pypi_non_wheel: bool,
    config: Path | None,
    auth_file: Path | None,
    prefix: Path | None,
    prefix_manifest: Path | None,
    wheel_dir: tuple[Path, ...],
    since: Path | None,
    concurrent_downloads: int | None,
    sign_key: Path | None,
    list_plugins: bool,
    verbose: int,
    quiet: bool,
) -> None:
    """Pack a locked pixi environment into one file that installs without any channel access.

    MANIFEST_PATH is a pixi.toml, a pyproject.toml or the workspace folder (default: the current folder).
    """
    # imported here, not at the top: --help and usage errors need none of them
    from ..pack.driver import pack
    from ..pack.options import PackOptions
    from ..plugins import get_plugin_manager

    setup_logging(verbose, quiet)
    if list_plugins:
        from .plugin_list import list_plugins as print_plugin_list

        run_reporting_errors(print_plugin_list)
        return
    chosen = [
        name for flag, name in ((directory_only, "directory"), (create_executable, "executable")) if flag
    ]
    if format_name:
        chosen.append(format_name)
    if len(set(chosen)) > 1:
        raise click.UsageError("choose one of --format, --directory-only and --create-executable")
    options = PackOptions(
        manifest=manifest_path,
        environment=environments[0],
        platform=platforms[0] if platforms else None,
        environments=list(environments),
        platforms=list(platforms),
        output=output,
        format=chosen[0] if chosen else "tar",
        use_cache=use_cache,
        config=config,
        auth_file=auth_file,
        inject=list(inject),
        ignore_pypi_non_wheel=ignore_pypi_non_wheel,
        prefix=prefix,
        prefix_manifest=prefix_manifest,
        wheel_dirs=list(wheel_dir),
        downloads=concurrent_downloads,
        since=since,
        sign=sign_key,
        format_options={"pixi_unpack_source": pixi_unpack_source} if pixi_unpack_source else {},
    )
    flags = click.get_current_context().meta.get(META_KEY, {})
    if format_option or flags:
        options.format_options.update(
            run_reporting_errors(
                lambda: format_options_for(
                    get_plugin_manager().format_named(options.format), format_option, flags
                )
            )
        )
    report = (lambda line: None) if quiet else (lambda line: stderr.print(line, soft_wrap=True))
    written = run_reporting_errors(lambda: pack(options, progress=progress_for(quiet), report=report))
    if written is not None and not quiet:
        what = (
            f"the environment at '{prefix}'"
            if prefix is not None
            else f"environment '{', '.join(environments)}'"
        )
        stderr.print(f"packed {what} into {written}")
