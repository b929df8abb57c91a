"""The image config: the base's settings, the environment on PATH, the entrypoint, fixed timestamps."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import PurePosixPath

from .errors import OciError
from .options import ENTRYPOINT_PATH, ImageOptions
from .platforms import OciPlatform

#: PATH of an image whose base names none (Docker's default for Linux containers).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def build_epoch() -> int:
    """The one timestamp of the image (layer mtimes, ``created``): ``SOURCE_DATE_EPOCH`` or 0."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return 0
    if not value.isdigit():
        raise OciError(f"SOURCE_DATE_EPOCH must be a number of seconds, not '{value}'")
    return int(value)


def timestamp(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _environment(base_env: list[str], prefix: PurePosixPath) -> list[str]:
    variables: dict[str, str] = {}
    for item in base_env:
        name, _, value = item.partition("=")
        variables[name] = value
    variables["PATH"] = f"{prefix}/bin:{variables.get('PATH') or DEFAULT_PATH}"
    variables["CONDA_PREFIX"] = str(prefix)
    return [f"{name}={value}" for name, value in variables.items()]


def _base_history(base: dict[str, object] | None, base_layers: int, created: str) -> list[dict[str, object]]:
    """The base's history, padded so that its non-empty entries match its layers."""
    history = base.get("history") if base else None
    entries = [dict(h) for h in history if isinstance(h, dict)] if isinstance(history, list) else []
    missing = base_layers - sum(1 for h in entries if not h.get("empty_layer"))
    return [{"created": created, "comment": "base image layer"} for _ in range(max(missing, 0))] + entries


def image_config(
    base: dict[str, object] | None,
    target: OciPlatform,
    diff_ids: list[str],
    base_layers: int,
    options: ImageOptions,
    epoch: int,
) -> dict[str, object]:
    """The config document of the new image."""
    created = timestamp(epoch)
    base_settings = base.get("config") if base else None
    settings: dict[str, object] = dict(base_settings) if isinstance(base_settings, dict) else {}
    base_env = settings.get("Env")
    settings["Env"] = _environment(
        list(map(str, base_env)) if isinstance(base_env, list) else [], options.prefix
    )
    settings["Entrypoint"] = [str(ENTRYPOINT_PATH), *options.entrypoint]
    if options.entrypoint or not settings.get("Cmd"):
        settings.pop("Cmd", None)  # --entrypoint replaces the base's CMD; without it, CMD runs activated
    history = [
        *_base_history(base, base_layers, created),
        {"created": created, "created_by": f"pixi-pack: environment at {options.prefix}"},
        {"created": created, "created_by": f"pixi-pack: {ENTRYPOINT_PATH} activating it"},
    ]
    config: dict[str, object] = {"created": created, **target.to_json()}
    config["config"] = settings
    config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    config["history"] = history
    return config
