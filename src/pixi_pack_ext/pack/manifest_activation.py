"""Read a workspace's ``[activation]`` tables for one environment and platform, as pixi applies them.

pixi (``pixi_core`` ``Environment::activation_scripts``/``activation_env``, ``pixi_manifest``
``Feature``/``Targets::resolve``) takes the environment's features in the order the environment
lists them, then the default feature (unless ``no-default-feature``). Within a feature the targets
that match the platform are ordered most specific first: the ``[target.*]`` tables in reverse order
of appearance, then the feature's own ``[activation]``.

- scripts: per feature, the list of the first of those targets that has ``scripts``; the features'
  lists are concatenated.
- env: per feature, each name takes its value from the first target that sets it; across features
  the first feature that sets a name wins.

``pixi shell-hook`` sources the scripts after the packages' activation and sets the env last.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..activation_data import WorkspaceActivation, check_name
from ..errors import PackError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)

#: The largest activation script packed: they set a few variables.
MAX_SCRIPT_SIZE = 16 << 20


def _selector_matches(selector: str, platform: str) -> bool | None:
    """Whether a ``[target.SELECTOR]`` applies to ``platform``; None for selectors not read here."""
    family = platform.split("-", 1)[0]
    if selector == platform:
        return True
    if selector in ("unix",):
        return family in ("linux", "osx")
    if selector in ("linux", "win"):
        return family == selector
    if selector in ("osx", "macos"):
        return family == "osx"
    if "(" in selector:
        return None
    return False


def _pixi_table(manifest: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        log.warning("cannot read the manifest '%s' (%s); its [activation] is not packed", manifest, exc)
        return {}
    if manifest.name == "pyproject.toml":
        table = data.get("tool", {}).get("pixi", {})
        return table if isinstance(table, dict) else {}
    return data


def _targets(feature: dict[str, Any], platform: str) -> Iterator[dict[str, Any]]:
    """The feature's activation tables that apply to ``platform``, most specific first."""
    matching: list[dict[str, Any]] = []
    activation = feature.get("activation")
    matching.append(activation if isinstance(activation, dict) else {})
    targets = feature.get("target", {})
    for selector, target in targets.items() if isinstance(targets, dict) else []:
        matches = _selector_matches(str(selector), platform)
        if matches is None:
            if isinstance(target, dict) and "activation" in target:
                log.warning(
                    "the manifest's [target.'%s'.activation] is not packed: conditional selectors are not read",
                    selector,
                )
            continue
        if matches and isinstance(target, dict):
            table = target.get("activation")
            matching.append(table if isinstance(table, dict) else {})
    return reversed(matching)


def _environment_features(pixi: dict[str, Any], environment: str) -> list[dict[str, Any]]:
    features = pixi.get("feature", {}) if isinstance(pixi.get("feature"), dict) else {}
    environments = pixi.get("environments", {}) if isinstance(pixi.get("environments"), dict) else {}
    spec = environments.get(environment)
    if spec is None and environment != "default":
        log.warning(
            "environment '%s' of the lock is not in the manifest's [environments]; its [activation] is "
            "not packed",
            environment,
        )
        return []
    names: list[str] = []
    no_default = False
    if isinstance(spec, list):
        names = [str(n) for n in spec]
    elif isinstance(spec, dict):
        names = [str(n) for n in spec.get("features", [])]
        no_default = bool(spec.get("no-default-feature", False))
    chosen = []
    for name in names:
        if name not in features or not isinstance(features[name], dict):
            log.warning(
                "environment '%s' uses feature '%s', which the manifest does not define", environment, name
            )
            continue
        chosen.append(features[name])
    if not no_default:
        chosen.append(pixi)  # the default feature: the top-level tables
    return chosen


def read_activation(manifest: Path, environment: str, platform: str) -> WorkspaceActivation:
    """The ``[activation]`` of ``environment`` on ``platform`` from a pixi.toml or pyproject.toml (or
    a workspace folder holding one); a missing script is left out with a warning, as pixi does."""
    if manifest.is_dir():
        found = [manifest / n for n in ("pixi.toml", "pyproject.toml") if (manifest / n).is_file()]
        if not found:
            return WorkspaceActivation((), ())
        manifest = found[0]
    if manifest.suffix == ".lock":
        manifest = manifest.parent / "pixi.toml"
        if not manifest.is_file():
            manifest = manifest.with_name("pyproject.toml")
    if not manifest.is_file():
        return WorkspaceActivation((), ())
    pixi = _pixi_table(manifest)
    env: dict[str, str] = {}
    scripts: list[Path] = []
    for feature in _environment_features(pixi, environment):
        feature_env: dict[str, str] = {}
        feature_scripts: list[str] | None = None
        for table in _targets(feature, platform):
            if feature_scripts is None and isinstance(table.get("scripts"), list):
                feature_scripts = [str(s) for s in table["scripts"]]
            values = table.get("env")
            for name, value in values.items() if isinstance(values, dict) else []:
                check_name(str(name), f"the manifest's [activation.env] in {manifest.name}")
                feature_env.setdefault(str(name), str(value))
        for name, value in feature_env.items():
            env.setdefault(name, value)
        scripts += [manifest.parent / s for s in feature_scripts or []]
    present = [s for s in scripts if s.is_file()]
    missing = [str(s) for s in scripts if not s.is_file()]
    if missing:
        log.warning("could not find activation scripts: %s; they are not packed", ", ".join(missing))
    for script in present:
        _check_script(script, manifest.parent)
    return WorkspaceActivation(tuple(env.items()), tuple(present))


def _check_script(script: Path, root: Path) -> None:
    """A pack travels: only files of the workspace go in (a manifest naming ``~/.ssh/id_rsa`` or a
    link out of the workspace would ship it), and activation scripts are small."""
    try:
        script.resolve().relative_to(root.resolve())
    except ValueError:
        raise PackError(
            f"refusing to pack the activation script '{script}': it is outside the workspace "
            f"'{root}'; move it into the workspace"
        ) from None
    if script.stat().st_size > MAX_SCRIPT_SIZE:
        raise PackError(
            f"refusing to pack the activation script '{script}': it is larger than {MAX_SCRIPT_SIZE >> 20} MiB"
        )
