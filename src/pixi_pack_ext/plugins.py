"""The plugin manager: built-ins and entry-point plugins, looked up by name with clear errors.

Built-in plugins are listed by module name below and registered exactly like third-party ones; the
rest of the core only asks the manager. ``PIXI_PACK_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry points
(built-ins still load), like ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``.

The list of entry points is kept between runs (``startup_cache``, keyed by what is installed):
``importlib.metadata`` is imported and asked only when something was installed, upgraded or
removed since the last run.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import pluggy

from . import hookspecs, startup_cache
from .errors import PluginError, UsageError
from .hookspecs import ChannelSource, Injector, PackFormat, UnpackStep

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "pixi_pack"
DISABLE_AUTOLOAD_ENV = "PIXI_PACK_DISABLE_PLUGIN_AUTOLOAD"

BUILTIN_PLUGINS: tuple[str, ...] = (
    "pixi_pack_ext.builtin.sources.http",
    "pixi_pack_ext.builtin.sources.file",
    "pixi_pack_ext.builtin.sources.s3",
    "pixi_pack_ext.builtin.formats.executable",
    "pixi_pack_ext.builtin.formats.tar",
    "pixi_pack_ext.builtin.formats.directory",
    "pixi_pack_ext.builtin.injectors.conda",
    "pixi_pack_ext.builtin.injectors.wheel",
    "pixi_pack_ext.builtin.unpack_steps.wheels",
)

T = TypeVar("T", ChannelSource, Injector, PackFormat, UnpackStep)


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin: its name, where it came from, and what it provides."""

    name: str
    module: str
    distribution: str
    builtin: bool
    provides: dict[str, list[str]] = field(default_factory=dict)
    version: str = ""


class PluginManager:
    """Loads plugins once and indexes what they provide; refuses duplicate names."""

    def __init__(self, *, autoload: bool | None = None, extra_plugins: Iterable[object] = ()) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._origins: dict[str, tuple[str, str, bool]] = {}
        self._versions: dict[str, str] = {}
        if autoload is None:
            autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
        for module_name in BUILTIN_PLUGINS:
            self._register(importlib.import_module(module_name), module_name, "pixi-pack-ext", builtin=True)
        if autoload:
            self._load_entry_points()
        for plugin in extra_plugins:
            name = getattr(plugin, "__name__", type(plugin).__name__)
            self._register(plugin, name, "(registered in code)", builtin=False)

    def _register(self, plugin: object, name: str, distribution: str, *, builtin: bool) -> None:
        if self._pm.has_plugin(name):
            raise PluginError(f"plugin '{name}' from {distribution} is registered twice")
        try:
            self._pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin '{name}' from {distribution} does not fit the hooks: {exc}") from None
        except ValueError:  # pluggy: the same module under a second entry-point name
            other = self._pm.get_name(plugin)
            raise PluginError(
                f"plugin '{name}' from {distribution} is the module of plugin '{other}' again"
            ) from None
        self._origins[name] = (getattr(plugin, "__name__", name), distribution, builtin)
        unknown = [
            impl.function.__name__
            for caller in self._pm.get_hookcallers(plugin) or []
            if not caller.has_spec()
            for impl in caller.get_hookimpls()
            if impl.plugin is plugin
        ]
        for hook_name in unknown:
            log.warning(
                "plugin '%s' from %s implements '%s', which is not a pixi-pack hook (a typo?); it is never called",
                name,
                distribution,
                hook_name,
            )

    def _load_entry_points(self) -> None:
        for ep in _entry_points():
            dist = ep.dist
            if self._pm.has_plugin(ep.name):
                log.warning(
                    "plugin '%s' from %s has the name of plugin '%s' from %s; it is skipped",
                    ep.name,
                    dist,
                    ep.name,
                    self._origins[ep.name][1],
                )
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must not break the tool
                log.warning(
                    "plugin '%s' from %s failed to load and is skipped: %s: %s",
                    ep.name,
                    dist,
                    type(exc).__name__,
                    exc,
                )
                continue
            try:
                self._register(plugin, ep.name, dist, builtin=False)
            except PluginError as exc:
                log.warning("%s; it is skipped", exc)
                continue
            if ep.version:
                self._versions[ep.name] = ep.version

    # -- what plugins provide -------------------------------------------------------------------

    def _origin(self, plugin_name: str) -> str:
        """``plugin 'x' (from distribution d)`` for messages."""
        _, dist, builtin = self._origins.get(plugin_name, (plugin_name, "unknown distribution", False))
        return f"plugin '{plugin_name}' ({'built in' if builtin else f'from {dist}'})"

    def _collect(self, hook_name: str, *, check: bool = True) -> list[tuple[str, T]]:
        hook = getattr(self._pm.hook, hook_name)
        found: list[tuple[str, T]] = []
        # In registration order: built-ins first, then entry points by name.
        for impl in hook.get_hookimpls():
            try:
                records = impl.function() or []
            except Exception as exc:
                raise PluginError(
                    f"{self._origin(impl.plugin_name)} failed in {hook_name}: {type(exc).__name__}: {exc}"
                ) from None
            found.extend((impl.plugin_name, record) for record in records)
        if check:
            self._refuse_duplicates(hook_name, [(plugin, record.name) for plugin, record in found], "name")
        return found

    def _refuse_duplicates(self, hook_name: str, claims: list[tuple[str, str]], what: str) -> None:
        seen: dict[str, str] = {}
        for plugin_name, value in claims:
            if value in seen:
                raise PluginError(
                    f"{hook_name}: the {what} '{value}' is declared by both {self._origin(seen[value])} "
                    f"and {self._origin(plugin_name)}; uninstall one of them "
                    f"(or set {DISABLE_AUTOLOAD_ENV}=1 to load no third-party plugins)"
                )
            seen[value] = plugin_name

    def _is_builtin(self, plugin_name: str) -> bool:
        return self._origins.get(plugin_name, ("", "", False))[2]

    @cached_property
    def sources(self) -> list[ChannelSource]:
        """Sources in lookup order: third-party first, so a plugin may take over a built-in's scheme.

        Two third-party sources claiming one scheme are refused (which one wins would be an accident).
        """
        found = self._collect("pixi_pack_sources")
        third_party = [(p, r) for p, r in found if not self._is_builtin(p)]
        self._refuse_duplicates(
            "pixi_pack_sources",
            [(p, scheme.lower()) for p, r in third_party for scheme in r.schemes],
            "scheme",
        )
        builtin = [(p, r) for p, r in found if self._is_builtin(p)]
        for plugin_name, record in third_party:
            taken = {s.lower() for _, b in builtin for s in b.schemes} & {s.lower() for s in record.schemes}
            if taken:
                log.info(
                    "%s serves %s:// in place of the built-in source",
                    self._origin(plugin_name),
                    ", ".join(sorted(taken)),
                )
        return [r for _, r in third_party + builtin]

    @cached_property
    def _source_by_scheme(self) -> dict[str, ChannelSource]:
        """The first source in lookup order for each scheme (looked up once per file)."""
        by_scheme: dict[str, ChannelSource] = {}
        for source in self.sources:
            for scheme in source.schemes:
                by_scheme.setdefault(scheme.lower(), source)
        return by_scheme

    @cached_property
    def injectors(self) -> list[Injector]:
        return [r for _, r in self._collect("pixi_pack_injectors")]

    @cached_property
    def formats(self) -> list[PackFormat]:
        return [r for _, r in self._collect("pixi_pack_formats")]

    @cached_property
    def unpack_steps(self) -> list[UnpackStep]:
        return sorted(
            (r for _, r in self._collect("pixi_pack_unpack_steps")), key=lambda s: (s.order, s.name)
        )

    # -- lookups ----------------------------------------------------------------------------------

    def source_for(self, url: str) -> ChannelSource:
        scheme = urlsplit(url).scheme.lower()
        if len(scheme) <= 1:  # a plain path, or a Windows drive letter
            scheme = "file"
        source = self._source_by_scheme.get(scheme)
        if source is not None:
            return source
        known = sorted({s for src in self.sources for s in src.schemes})
        raise PluginError(
            f"no channel source handles '{scheme}://' URLs (known: {', '.join(known)}); "
            "install a plugin that provides one"
        )

    def format_named(self, name: str) -> PackFormat:
        for fmt in self.formats:
            if fmt.name == name:
                return fmt
        raise UsageError(f"unknown format '{name}'; available: {', '.join(f.name for f in self.formats)}")

    def format_reading(self, path: Path | None) -> PackFormat:
        for fmt in self.formats:
            if fmt.can_read is not None and fmt.open_pack is not None and fmt.can_read(path):
                return fmt
        what = "standard input" if path is None else f"'{path}'"
        readers = ", ".join(f.name for f in self.formats if f.can_read)
        raise UsageError(f"{what} is not a pack any installed format can read (formats: {readers})")

    def injector_for(self, path: Path) -> Injector:
        name = path.name.lower()
        for injector in self.injectors:
            if any(name.endswith(suffix) for suffix in injector.suffixes):
                return injector
        suffixes = sorted({s for i in self.injectors for s in i.suffixes})
        raise UsageError(f"cannot inject '{path}': only {', '.join(suffixes)} files can be injected")

    def describe(self) -> list[PluginInfo]:
        """What is loaded, from where, and what each plugin provides (for ``pixi-pack plugins``)."""
        provided: dict[str, dict[str, list[str]]] = {}
        for hook_name, kind in (
            ("pixi_pack_sources", "sources"),
            ("pixi_pack_injectors", "injectors"),
            ("pixi_pack_formats", "formats"),
            ("pixi_pack_unpack_steps", "unpack steps"),
        ):
            for plugin_name, record in self._collect(hook_name, check=False):
                label = record.name
                if isinstance(record, ChannelSource):
                    label += f" ({', '.join(s + '://' for s in record.schemes)})"
                provided.setdefault(plugin_name, {}).setdefault(kind, []).append(label)
        return [
            PluginInfo(name, module, dist, builtin, provided.get(name, {}), self._versions.get(name, ""))
            for name, (module, dist, builtin) in self._origins.items()
        ]

    def check(self) -> None:
        """Raise ``PluginError`` when two plugins declare the same name (or a source scheme)."""
        _ = self.sources, self.injectors, self.formats, self.unpack_steps


@dataclass(frozen=True)
class _EntryPoint:
    """One entry point of the group: what ``importlib.metadata`` says of it, kept as plain text."""

    name: str
    value: str
    dist: str
    version: str

    def load(self) -> object:
        """The object ``module:attr`` names (extras in brackets are ignored, as by importlib)."""
        module_name, _, attrs = self.value.partition("[")[0].partition(":")
        found: object = importlib.import_module(module_name.strip())
        for attr in filter(None, attrs.strip().split(".")):
            found = getattr(found, attr)
        return found


def _entry_points() -> list[_EntryPoint]:
    """The group's entry points, sorted by name: kept from an earlier run while nothing installed
    has changed, else from ``importlib.metadata``."""
    key = startup_cache.installation_key()
    kept = startup_cache.read("entry-points", key)
    if kept is not None:
        with contextlib.suppress(ValueError, TypeError):
            return [_EntryPoint(*fields) for fields in json.loads(kept)]
    from importlib.metadata import entry_points

    found = sorted(
        (
            _EntryPoint(
                ep.name,
                ep.value,
                ep.dist.name if ep.dist else "unknown distribution",
                ep.dist.version if ep.dist else "",
            )
            for ep in entry_points(group=ENTRY_POINT_GROUP)
        ),
        key=lambda e: e.name,
    )
    startup_cache.keep("entry-points", key, json.dumps([[e.name, e.value, e.dist, e.version] for e in found]))
    return found


_manager: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide manager, created on first use."""
    global _manager
    if _manager is None:
        _manager = PluginManager()
    return _manager


def reset_plugin_manager() -> None:
    """Forget the loaded plugins (tests that install or register plugins call this)."""
    global _manager
    _manager = None
