"""Settings for a pack run: config.toml (pixi/rattler keys), the auth file, and CLI overrides.

A user's existing pixi ``config.toml`` works as it is: keys pixi-pack-ext does not use are ignored
(with a warning for keys no pixi config knows), and wrong types fail naming the key, file and type.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on old pythons only
    import tomli as tomllib

log = logging.getLogger(__name__)

DEFAULT_DOWNLOADS = 50

#: Keys of pixi's config.toml that pixi-pack-ext reads.
USED_KEYS = {"mirrors", "s3-options", "concurrency", "tls-no-verify", "authentication-override-file"}
#: Keys pixi's config.toml may hold that do not concern packing; accepted silently.
PIXI_ONLY_KEYS = {
    "default-channels",
    "change-ps1",
    "shell",
    "pinning-strategy",
    "detached-environments",
    "pypi-config",
    "repodata-config",
    "experimental",
    "proxy-config",
    "run-post-link-scripts",
    "tool-platform",
    "max-concurrent-solves",
    "max-concurrent-downloads",
}


@dataclass(frozen=True)
class S3Options:
    """How to reach one S3 bucket (``[s3-options.<bucket>]``)."""

    endpoint_url: str
    region: str
    force_path_style: bool = False


@dataclass
class Settings:
    """Everything sources and the fetcher need, resolved once per run."""

    mirrors: dict[str, list[str]] = field(default_factory=dict)
    s3_options: dict[str, S3Options] = field(default_factory=dict)
    downloads: int = DEFAULT_DOWNLOADS
    tls_verify: bool = True
    auth_file: Path | None = None
    read_timeout: float = 60.0
    retries: int = 3
    auth: AuthStore = field(default_factory=lambda: AuthStore())
    #: Free-form settings for third-party plugins: the raw config table.
    raw: dict[str, Any] = field(default_factory=dict)


def _expect(value: Any, kind: type | tuple[type, ...], key: str, path: Path, expected: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"'{key}' in {path} must be {expected}, not {type(value).__name__}")
    return value


def load_config(path: Path | None) -> Settings:
    """Read ``path`` (when given) into Settings; defaults otherwise."""
    settings = Settings()
    if path is None:
        return settings
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' does not exist; check the -c/--config path") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file '{path}' is not valid TOML: {exc}") from None
    settings.raw = data
    for key in data:
        if key not in USED_KEYS and key not in PIXI_ONLY_KEYS:
            log.warning("unknown key '%s' in %s is ignored", key, path)

    mirrors = _expect(data.get("mirrors", {}), dict, "mirrors", path, "a table of URL = [mirror URLs]")
    for prefix, targets in mirrors.items():
        _expect(targets, list, f"mirrors.{prefix}", path, "a list of URLs")
        for target in targets:
            _expect(target, str, f"mirrors.{prefix}", path, "a list of URL strings")
        settings.mirrors[prefix] = list(targets)

    s3 = _expect(data.get("s3-options", {}), dict, "s3-options", path, "a table of bucket tables")
    for bucket, options in s3.items():
        key = f"s3-options.{bucket}"
        _expect(options, dict, key, path, "a table")
        for sub in options:
            if sub not in ("endpoint-url", "region", "force-path-style"):
                log.warning("unknown key '%s.%s' in %s is ignored", key, sub, path)
        if "endpoint-url" not in options or "region" not in options:
            raise ConfigError(f"'{key}' in {path} needs both 'endpoint-url' and 'region'")
        settings.s3_options[bucket] = S3Options(
            endpoint_url=_expect(options["endpoint-url"], str, f"{key}.endpoint-url", path, "a string"),
            region=_expect(options["region"], str, f"{key}.region", path, "a string"),
            force_path_style=_expect(
                options.get("force-path-style", False), bool, f"{key}.force-path-style", path, "a boolean"
            ),
        )

    concurrency = _expect(data.get("concurrency", {}), dict, "concurrency", path, "a table")
    for sub in concurrency:
        if sub not in ("downloads", "solves"):
            log.warning("unknown key 'concurrency.%s' in %s is ignored", sub, path)
    if "downloads" in concurrency:
        downloads = _expect(concurrency["downloads"], int, "concurrency.downloads", path, "an integer")
        if downloads < 1:
            raise ConfigError(f"'concurrency.downloads' in {path} must be at least 1, not {downloads}")
        settings.downloads = downloads
    if "tls-no-verify" in data:
        settings.tls_verify = not _expect(data["tls-no-verify"], bool, "tls-no-verify", path, "a boolean")
    if "authentication-override-file" in data:
        override = _expect(
            data["authentication-override-file"], str, "authentication-override-file", path, "a path"
        )
        settings.auth_file = Path(override).expanduser()
    return settings


# --------------------------------------------------------------------------------------------------
# Authentication (rattler's auth-file format)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credential:
    """One entry of rattler's auth file: exactly one of the kinds is set."""

    bearer_token: str | None = None
    username: str | None = None
    password: str | None = None
    conda_token: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_session_token: str | None = None

    def secrets(self) -> list[str]:
        return [
            s
            for s in (
                self.bearer_token,
                self.password,
                self.conda_token,
                self.s3_secret_access_key,
                self.s3_session_token,
            )
            if s
        ]


def _parse_credential(value: Any, host: str, path: Path) -> Credential:
    if not isinstance(value, dict) or len(value) != 1:
        raise ConfigError(
            f"auth entry '{host}' in {path} must be an object with one of "
            "BearerToken, BasicHTTP, CondaToken, S3Credentials"
        )
    kind, data = next(iter(value.items()))
    if kind == "BearerToken" and isinstance(data, str):
        return Credential(bearer_token=data)
    if kind == "CondaToken" and isinstance(data, str):
        return Credential(conda_token=data)
    if kind == "BasicHTTP" and isinstance(data, dict) and "username" in data:
        return Credential(username=str(data["username"]), password=str(data.get("password", "")))
    if kind == "S3Credentials" and isinstance(data, dict) and "access_key_id" in data:
        return Credential(
            s3_access_key_id=str(data["access_key_id"]),
            s3_secret_access_key=str(data.get("secret_access_key", "")),
            s3_session_token=data.get("session_token"),
        )
    raise ConfigError(f"auth entry '{host}' in {path} has an unknown or malformed kind '{kind}'")


class AuthStore:
    """Credentials by host, from an auth file, ``RATTLER_AUTH_FILE``, ``~/.rattler`` and netrc.

    Lookup order follows rattler: an exact host, then a wildcard (``*.example.com``), then netrc.
    """

    def __init__(self, entries: dict[str, Credential] | None = None, use_netrc: bool = True) -> None:
        self.entries = entries or {}
        self.use_netrc = use_netrc

    @classmethod
    def discover(cls, explicit: Path | None) -> AuthStore:
        """Load the first auth file that applies: ``--auth-file``, ``RATTLER_AUTH_FILE``, ``~/.rattler``."""
        candidates: list[tuple[Path, bool]] = []
        if explicit is not None:
            candidates.append((explicit, True))
        env_file = os.environ.get("RATTLER_AUTH_FILE")
        if env_file:
            candidates.append((Path(env_file), True))
        candidates.append((Path.home() / ".rattler" / "credentials.json", False))
        for path, required in candidates:
            if path.is_file():
                return cls(cls._read(path))
            if required:
                raise ConfigError(
                    f"auth file '{path}' does not exist; check --auth-file or RATTLER_AUTH_FILE"
                )
        return cls()

    @staticmethod
    def _read(path: Path) -> dict[str, Credential]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"auth file '{path}' is not valid JSON: {type(exc).__name__}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"auth file '{path}' must be a JSON object of host -> credential")
        return {host: _parse_credential(value, host, path) for host, value in data.items()}

    def lookup(self, host: str) -> Credential | None:
        host = host.lower()
        if host in self.entries:
            return self.entries[host]
        for pattern, credential in self.entries.items():
            if pattern.startswith("*.") and host.endswith(pattern[1:]):
                return credential
        if self.use_netrc:
            return self._from_netrc(host)
        return None

    @staticmethod
    def _from_netrc(host: str) -> Credential | None:
        import netrc

        path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
        try:
            entry = netrc.netrc(path).authenticators(host)
        except (FileNotFoundError, netrc.NetrcParseError, OSError):
            return None
        if entry is None:
            return None
        login, _, password = entry
        return Credential(username=login or "", password=password or "")

    def secrets(self) -> list[str]:
        return [s for c in self.entries.values() for s in c.secrets()]
