"""Make a pack: plan -> inject -> fetch and verify -> lay out -> hand to the output format.

Everything is laid out in a staging folder next to the output (so the final move is a rename), and
the staging folder is removed whatever happens: a failed pack leaves nothing at the output path.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .. import untrusted
from ..config import AuthStore, Settings, apply_environment, load_config
from ..errors import DownloadError, PackError, PixiPackError, UsageError
from ..hookspecs import WriteRequest
from ..interrupts import held_interrupts
from ..metadata import CHANNEL_DIR, ENVIRONMENT_FILE, METADATA_FILE, PYPI_DIR, environment_yml, metadata_for
from ..plan import PackPlan
from ..plugins import PluginManager, get_plugin_manager
from ..redact import redact_url
from ..staging_owner import make_owned_folder, remove_tree
from .fetch import Fetcher
from .fetch_item import FetchItem
from .lockfile import read_plan
from .manifest_activation import read_activation
from .options import PackOptions
from .output_path import check_cache_folder, check_output
from .preload import preload_in_background
from .progress import Progress
from .pypi_selection import select_wheels

if TYPE_CHECKING:
    from ..activation_data import PackActivation
    from .download_cache import DownloadCache

log = logging.getLogger(__name__)


def resolve_settings(options: PackOptions) -> Settings:
    settings = apply_environment(load_config(options.config))
    settings.auth = AuthStore.discover(options.auth_file or settings.auth_file)
    if options.downloads is not None:
        if options.downloads < 1:
            raise UsageError("--concurrent-downloads must be at least 1")
        settings.downloads = options.downloads
    return settings


def make_plan(options: PackOptions, plugins: PluginManager, settings: Settings) -> PackPlan:
    """The plan from the lock (or the installed prefix), with injections applied and wheels chosen."""
    if options.prefix is not None:
        from .prefix.plan_from_prefix import plan_from_prefix

        if Path(options.manifest) != Path(".") or (
            options.environment != "default" and options.prefix_manifest is None
        ):
            raise UsageError(
                "--prefix packs an installed environment, not a lock; drop -e/--environment and "
                "MANIFEST_PATH, or name the workspace with --manifest (or drop --prefix to pack from the lock)"
            )
        plan = plan_from_prefix(options.prefix, options, settings)
        if options.prefix_manifest is not None:
            plan.activation = read_activation(options.prefix_manifest, options.environment, plan.platform)
    else:
        if options.wheel_dirs:
            raise UsageError("--wheel-dir only applies with --prefix (a lock names its wheels itself)")
        if options.prefix_manifest is not None:
            raise UsageError("--manifest only applies with --prefix; give the workspace as MANIFEST_PATH")
        plan = read_plan(options.manifest, options.environment, options.platform)
        plan.activation = read_activation(options.manifest, options.environment, plan.platform)
    if options.inject:
        from .injection import apply_injections

        apply_injections(options.inject, plan, plugins)
    select_wheels(plan, ignore_non_wheel=options.ignore_pypi_non_wheel)
    return plan


def _plain_name(value: str) -> bool:
    return value not in ("", ".", "..") and not any(c in value for c in "/\\\0:")


def check_plan_names(plan: PackPlan) -> None:
    """Every subdir and file name becomes a path in the pack: each must be one plain name.

    A lock is input like any other; ``subdir: ../../x`` in it would otherwise make folders and
    write files outside the staging folder.
    """
    for name in [plan.platform, *plan.subdirs()]:
        if not _plain_name(name):
            raise PackError(f"refusing to pack: the subdir '{name}' is not a plain folder name")
    for package in plan.conda:
        if not _plain_name(package.file_name):
            raise PackError(
                f"refusing to pack {package.spec}: its file name '{package.file_name}' is not a plain name"
            )
        # What pixi-unpack will accept of the pack's repodata: refused here, not after the packing
        record = package.record
        untrusted.package_identity(
            record.name.source,
            str(record.version),
            str(record.build),
            package.file_name,
            f"package {package.spec}",
        )
    for wheel in plan.pypi:
        if wheel.is_wheel and not _plain_name(wheel.file_name):
            raise PackError(
                f"refusing to pack {wheel.name}=={wheel.version}: its file name '{wheel.file_name}' "
                "is not a plain name"
            )


def check_plan_hashes(plan: PackPlan) -> None:
    """Every file fetched from a server is proven by a hash the lock records: without one, the
    pack would hold whatever the server sent (and pixi-unpack would refuse it later, far away)."""
    for package in plan.conda:
        if package.local_path is None and not package.sha256 and not package.md5:
            raise PackError(
                f"refusing to pack {package.spec}: the lock records neither a sha256 nor an md5 for "
                f"{redact_url(package.url)}, so its bytes cannot be verified; regenerate the lock with "
                "pixi ('pixi lock'), or pass a file you trust with --inject"
            )
    for wheel in plan.pypi:
        if wheel.is_wheel and wheel.local_path is None and not wheel.sha256:
            raise PackError(
                f"refusing to pack {wheel.name}=={wheel.version}: the lock records no sha256 for "
                f"{redact_url(wheel.location)}, so its bytes cannot be verified; regenerate the lock "
                "with pixi ('pixi lock'), or pass a wheel you trust with --inject"
            )


def fetch_items(plan: PackPlan, staging: Path) -> list[FetchItem]:
    """One FetchItem per file of the plan, with its destination in the staging folder."""
    items: dict[str, FetchItem] = {}
    base = plan.workspace or Path.cwd()
    for package in plan.conda:
        url = str(package.local_path) if package.local_path else package.url
        if package.local_path is None and "://" not in url and not Path(url).is_absolute():
            url = str((base / url).resolve())
        items[package.pack_path] = FetchItem(
            label=package.spec,
            url=url,
            dest=staging / package.pack_path,
            sha256=package.sha256,
            md5=package.md5,
            size=package.record.size,
            cache_key=None if package.local_path else f"{package.subdir}/{package.file_name}",
        )
    for wheel in plan.pypi:
        url = str(wheel.local_path) if wheel.local_path else wheel.location.removeprefix("direct+")
        items[wheel.pack_path] = FetchItem(
            label=f"{wheel.name}=={wheel.version}",
            url=url,
            dest=staging / wheel.pack_path,
            sha256=wheel.sha256,
            cache_key=None if wheel.local_path else f"{PYPI_DIR}/{wheel.file_name}",
        )
    return list(items.values())


def lay_out(plan: PackPlan, staging: Path) -> None:
    """Write the pack's index files and SBOM next to the packages (they come from the lock, so
    this may run while the packages are fetched; see ``lays_out_while_fetching``)."""
    from ..channel import write_channel_index
    from .sbom import write_sbom

    write_channel_index(staging / CHANNEL_DIR, plan.subdirs(), plan.conda)
    activation = _lay_out_activation(plan, staging)
    (staging / METADATA_FILE).write_text(
        metadata_for(plan.platform, plan.virtual_packages, activation).to_json()
    )
    (staging / ENVIRONMENT_FILE).write_text(environment_yml(plan))
    if any(p.is_wheel for p in plan.pypi):
        (staging / PYPI_DIR).mkdir(exist_ok=True)
    write_sbom(plan, staging)


def lays_out_while_fetching(plan: PackPlan) -> bool:
    """Whether ``lay_out`` needs nothing fetched: the SBOM hashes a wheel the lock gives no sha256
    for from its file, and a package rebuilt from an extracted folder (``--prefix``) gets the
    rebuilt file's hashes in the index."""
    return not any(w.is_wheel and not w.sha256 for w in plan.pypi) and not any(
        p.rebuild_from is not None for p in plan.conda
    )


def known_sha256(plan: PackPlan) -> dict[str, str]:
    """The sha256 of each file the fetcher checked against the lock, by its path in the pack."""
    known = {p.pack_path: p.sha256 for p in plan.conda if p.sha256}
    known.update({w.pack_path: w.sha256 for w in plan.pypi if w.is_wheel and w.sha256})
    return known


def seal_pack(plan: PackPlan, staging: Path, key: object | None) -> Callable[[str], None]:
    """Write the manifest (signed when ``key`` is given) and return how a format adds the sha256
    of the unpacker it embeds (the manifest is then written, and signed, again)."""
    from ..manifest import build_manifest, seal

    manifest = build_manifest(staging, known_sha256(plan))
    seal(staging, key, manifest)

    def seal_unpacker(sha256: str) -> None:
        manifest.unpacker_sha256 = sha256
        seal(staging, key, manifest)

    return seal_unpacker


def _open_cache(folder: Path) -> DownloadCache:
    from .download_cache import DownloadCache

    check_cache_folder(folder)
    try:
        return DownloadCache(folder)
    except OSError as exc:
        raise PackError(
            f"cannot use --use-cache '{folder}': {exc.strerror}; give a folder you can write to"
        ) from None


def _lay_out_activation(plan: PackPlan, staging: Path) -> PackActivation | None:
    """Copy the manifest's activation scripts into ``activation/``; what ``pixi-pack.json`` lists."""
    if plan.activation is None or not (plan.activation.env or plan.activation.scripts):
        return None
    from ..activation_data import ACTIVATION_DIR, PackActivation, script_member

    members = []
    for index, script in enumerate(plan.activation.scripts):
        member = script_member(index, script.name)
        (staging / ACTIVATION_DIR).mkdir(exist_ok=True)
        shutil.copyfile(script, staging / member)
        members.append(member)
    return PackActivation(env=plan.activation.env, scripts=tuple(members))


#: How long the downloads have to themselves before the preload starts (seconds): the first
#: requests leave before anything else is imported.
PRELOAD_AFTER = 0.005


#: The interpreter's thread switch interval while the downloads run (seconds; Python's default is
#: 0.005). The event loop gives up the interpreter lock at every system call, and a thread that
#: took it meanwhile (the preload, the lay-out, a writer) keeps it for up to the interval: on a
#: pack of a thousand small files that waiting cost ~5% of the run at the default.
FETCH_SWITCH_INTERVAL = 0.001


async def _fetch_preloading(
    fetcher: Fetcher, items: list[FetchItem], alongside: Callable[[], None] | None = None
) -> None:
    """``fetcher.fetch_all(items)``, importing what the rest of the pack needs meanwhile and
    running ``alongside`` on a thread (the event loop mostly waits for the network). The thread
    has ended when this returns or raises (a failed fetch's staging folder is removed next); a
    failed fetch is what is raised, else what ``alongside`` raised."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, FETCH_SWITCH_INTERVAL))
    try:
        task = asyncio.ensure_future(fetcher.fetch_all(items))
        await asyncio.wait({task}, timeout=PRELOAD_AFTER)
        preload_in_background()
        if alongside is None:
            await task
            return
        side = asyncio.ensure_future(asyncio.to_thread(alongside))
        try:
            await task
        finally:
            await asyncio.wait({side})
        side.result()
    finally:
        sys.setswitchinterval(previous)


def pack(
    options: PackOptions,
    plugins: PluginManager | None = None,
    progress: Progress | None = None,
    report: Callable[[str], None] = log.info,
) -> Path | None:
    """Make the pack; returns where it was written (None for standard output).

    ``report`` receives one line when the pack replaced an existing file."""
    plugins = plugins or get_plugin_manager()
    fmt = plugins.format_named(options.format)
    settings = resolve_settings(options)
    key = None
    if options.sign is not None:  # the key is read before any download
        from ..sshsig import load_private_key

        key = load_private_key(options.sign)
    multi = None
    if options.is_multi():
        from .multi_env import make_multi_plan

        plan, multi = make_multi_plan(options, plugins, settings, make_plan, fmt.name)
    else:
        plan = make_plan(options, plugins, settings)
    check_plan_names(plan)
    check_plan_hashes(plan)
    for note in plan.notes:
        log.warning("%s", note)
    delta = None
    if options.since is not None and multi is None:
        from .delta import make_delta

        delta = make_delta(plan, options.since, fmt.name)
    if fmt.check is not None:  # refuse a platform or options the format cannot use before downloading
        fmt.check(plan.platform, options.format_options)

    to_stdout = options.output is not None and str(options.output) == "-"
    if to_stdout and not fmt.streams:
        raise UsageError(f"format '{fmt.name}' cannot write to standard output; give -o a file name")
    output = None if to_stdout else (options.output or Path(fmt.default_output(plan.platform))).absolute()
    replacing = output is not None and check_output(output, fmt.writes_folder)
    cache = _open_cache(options.use_cache) if options.use_cache else None

    staging_parent = output.parent if output is not None else None
    try:
        # The pack is laid out in a folder of its own inside one that names its owner process,
        # so a later pack removes what a killed one left (the format takes the inner folder whole).
        owned = make_owned_folder(staging_parent, ".pixi-pack-")
    except OSError as exc:
        import tempfile

        where = staging_parent or Path(tempfile.gettempdir())
        fix = "choose an -o in a writable folder" if output is not None else "set TMPDIR to a writable folder"
        raise PackError(f"cannot create a staging folder in '{where}': {exc.strerror}; {fix}") from None
    staging = owned / "pack"
    try:
        staging.mkdir()
        fetcher = Fetcher(plugins, settings, cache=cache, progress=progress)
        items = fetch_items(plan, staging)
        # --prefix: packages that can be rebuilt from a cache's extracted folder are fetched apart,
        # so that failing to fetch them rebuilds them instead of ending the run
        fallback = {staging / p.pack_path: p for p in plan.conda if p.rebuild_from is not None}
        try:
            early = lays_out_while_fetching(plan)
            asyncio.run(
                _fetch_preloading(
                    fetcher,
                    [item for item in items if item.dest not in fallback],
                    (lambda: lay_out(plan, staging)) if early else None,
                )
            )
        except DownloadError as exc:
            if not plan.fetch_hint:
                raise
            raise type(exc)(f"{exc}; {plan.fetch_hint}") from None
        if fallback:
            from .prefix.rebuild import fetch_or_rebuild

            fetch_or_rebuild(
                [item for item in items if item.dest in fallback],
                fallback,
                lambda batch: asyncio.run(Fetcher(plugins, settings, cache=cache).fetch_all(batch)),
            )
        if not early:
            lay_out(plan, staging)
        if delta is not None:
            delta.write(staging, plan)
        if multi is not None:
            from .sbom import write_sbom

            multi.write(staging)
            write_sbom(
                plan, staging, {name: sorted(by_platform) for name, by_platform in multi.targets.items()}
            )
        # Last: the manifest lists the staging folder as the format will write it.
        seal_unpacker = seal_pack(plan, staging, key)
        fmt.write(
            WriteRequest(
                staging=staging,
                output=output,
                platform=plan.platform,
                options=options.format_options,
                seal_unpacker=seal_unpacker,
            )
        )
        if replacing:
            report(f"replaced the existing file {output}")
        if options.prefix is not None and options.prefix_manifest is None:
            log.warning(
                "--prefix packs have no manifest: the workspace's [activation] env and scripts are not "
                "in the pack; pass --manifest PATH (and -e ENV) to carry them"
            )
    except OSError as exc:
        if isinstance(exc, PixiPackError):
            raise
        raise PackError(
            f"writing the pack failed: {exc.strerror or exc} ({exc.filename or output})"
        ) from None
    finally:
        with held_interrupts():
            remove_tree(owned)
    return output
