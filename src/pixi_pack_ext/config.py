"""Settings for a pack run: config.toml (pixi/rattler keys), the auth file, and CLI overrides.

A user's existing pixi ``config.toml`` works as it is: keys pixi-pack-ext does not use are ignored
(with a warning for keys no pixi config knows), and wrong types fail naming the key, file and type.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_DOWNLOADS = 50

#: Keys of pixi's config.toml that pixi-pack-ext reads.
USED_KEYS = {
    "mirrors",
    "s3-options",
    "concurrency",
    "tls-no-verify",
    "authentication-override-file",
    "run-post-link-scripts",
    "trusted-keys",
}
#: pixi still reads these older snake_case spellings; so do we.
SNAKE_CASE_ALIASES = {
    "tls_no_verify": "tls-no-verify",
    "authentication_override_file": "authentication-override-file",
}
#: Keys pixi's (or rattler's) config.toml may hold that do not concern packing; accepted silently.
PIXI_ONLY_KEYS = {
    "default-channels",
    "default_channels",
    "change-ps1",
    "change_ps1",
    "force-activate",
    "shell",
    "pinning-strategy",
    "detached-environments",
    "pypi-config",
    "repodata-config",
    "experimental",
    "proxy-config",
    "tool-platform",
    "tls-root-certs",
    "build",
    "channel-config",
    "extensions",
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
    #: pixi's ``run-post-link-scripts = "insecure"``: pixi-unpack runs the packages' post-link scripts.
    run_post_link_scripts: bool = False
    #: OpenSSH public keys (``.pub`` paths, relative to the config file, or key text) whose signed
    #: packs pixi-unpack and ``pixi-pack verify`` accept (``trusted-keys``).
    trusted_keys: list[str] = field(default_factory=list)
    #: Free-form settings for third-party plugins: the raw config table.
    raw: dict[str, Any] = field(default_factory=dict)


#: How TOML calls the Python types a parsed file holds (for error messages).
TOML_TYPE_NAMES = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    list: "an array",
    dict: "a table",
}


def _toml() -> Any:
    """The TOML parser, loaded when a config file is there to read."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on old pythons only
        import tomli as tomllib
    return tomllib


def _toml_type(value: Any) -> str:
    return next((name for kind, name in TOML_TYPE_NAMES.items() if isinstance(value, kind)), "a date/time")


def _expect(value: Any, kind: type | tuple[type, ...], key: str, path: Path, expected: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"'{key}' in {path} must be {expected}, not {_toml_type(value)}")
    return value


def _expect_url(value: Any, key: str, path: Path, schemes: tuple[str, ...] | None = None) -> str:
    """A string that is a URL (``scheme://...``), optionally of one of ``schemes``."""
    text = _expect(value, str, key, path, "a URL string")
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if not scheme or (schemes is not None and scheme not in schemes):
        wanted = " or ".join(f"{s}://" for s in schemes) if schemes else "scheme://"
        raise ConfigError(f"'{key}' in {path} must be a URL starting with {wanted}, not '{text}'")
    return text


def load_config(path: Path | None) -> Settings:
    """Read ``path`` (when given) into Settings; defaults otherwise."""
    settings = Settings()
    if path is None:
        return settings
    try:
        data = _toml().loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' does not exist; check the -c/--config path") from None
    except (_toml().TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file '{path}' is not valid TOML: {exc}") from None
    settings.raw = data
    for alias, key in SNAKE_CASE_ALIASES.items():
        if alias in data and key not in data:
            data[key] = data.pop(alias)
    for key in data:
        if key not in USED_KEYS and key not in PIXI_ONLY_KEYS:
            log.warning("unknown key '%s' in %s is ignored", key, path)

    mirrors = _expect(data.get("mirrors", {}), dict, "mirrors", path, "a table of URL = [mirror URLs]")
    for prefix, targets in mirrors.items():
        key = f'mirrors."{prefix}"'
        _expect_url(prefix, key, path)
        _expect(targets, list, key, path, "an array of mirror URLs")
        settings.mirrors[prefix] = [_expect_url(target, key, path) for target in targets]

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
            endpoint_url=_expect_url(options["endpoint-url"], f"{key}.endpoint-url", path, ("http", "https")),
            region=_expect(options["region"], str, f"{key}.region", path, "a string"),
            force_path_style=_expect(
                options.get("force-path-style", False), bool, f"{key}.force-path-style", path, "a boolean"
            ),
        )

    concurrency = _expect(data.get("concurrency", {}), dict, "concurrency", path, "a table")
    for sub in concurrency:
        if sub not in ("downloads", "solves"):
            log.warning("unknown key 'concurrency.%s' in %s is ignored", sub, path)
    # pixi's older top-level spelling counts when the [concurrency] table does not say.
    for key, value in (
        ("concurrency.downloads", concurrency.get("downloads")),
        ("max-concurrent-downloads", data.get("max-concurrent-downloads")),
    ):
        if value is not None:
            downloads = _expect(value, int, key, path, "an integer")
            if downloads < 1:
                raise ConfigError(f"'{key}' in {path} must be at least 1, not {downloads}")
            settings.downloads = downloads
            break
    if "tls-no-verify" in data:
        settings.tls_verify = not _expect(data["tls-no-verify"], bool, "tls-no-verify", path, "a boolean")
    if "run-post-link-scripts" in data:
        value = data["run-post-link-scripts"]
        if value not in ("insecure", "false", False):
            shown = f"'{value}'" if isinstance(value, str) else _toml_type(value)
            raise ConfigError(
                f'\'run-post-link-scripts\' in {path} must be "insecure" (run them) or "false", not {shown}'
            )
        settings.run_post_link_scripts = value == "insecure"
    if "authentication-override-file" in data:
        override = _expect(
            data["authentication-override-file"], str, "authentication-override-file", path, "a path"
        )
        settings.auth_file = Path(override).expanduser()
    keys = _expect(data.get("trusted-keys", []), list, "trusted-keys", path, "an array of public key files")
    for index, value in enumerate(keys):
        entry = _expect(value, str, f"trusted-keys[{index}]", path, "a path or public key string")
        if not entry.startswith(("ssh-", "ecdsa-")):
            entry = str((path.parent / Path(entry).expanduser()).absolute())
        settings.trusted_keys.append(entry)
    return settings


#: Network settings that no pixi config key holds, from the environment: name -> (field, minimum).
NETWORK_ENV = {
    "PIXI_PACK_READ_TIMEOUT": ("read_timeout", 0.001),
    "PIXI_PACK_RETRIES": ("retries", 0),
}


def apply_environment(settings: Settings, environ: Mapping[str, str] | None = None) -> Settings:
    """``PIXI_PACK_READ_TIMEOUT`` (seconds a server may stay silent mid-download, default 60) and
    ``PIXI_PACK_RETRIES`` (extra attempts per file and source, default 3), when set."""
    environ = os.environ if environ is None else environ
    for name, (attribute, minimum) in NETWORK_ENV.items():
        raw = environ.get(name, "").strip()
        if not raw:
            continue
        kind = type(getattr(settings, attribute))
        try:
            value = kind(raw)
        except ValueError:
            value = None
        if value is None or value != value or value < minimum or value == float("inf"):
            what = "a number of seconds above 0" if kind is float else f"a whole number of at least {minimum}"
            raise ConfigError(f"{name} must be {what}, not '{raw}'")
        setattr(settings, attribute, value)
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
    """Credentials by host, layered like rattler's authentication storage.

    Files are consulted in order: ``--auth-file`` (or the config's ``authentication-override-file``),
    ``RATTLER_AUTH_FILE``, ``~/.rattler/credentials.json``; then netrc (``NETRC`` or ``~/.netrc``).
    Within a file an exact host wins over a wildcard (``*.example.com``). Keys are host names
    without port; S3 buckets are keyed ``s3://bucket``.
    """

    def __init__(
        self,
        entries: dict[str, Credential] | None = None,
        use_netrc: bool = True,
        layers: list[dict[str, Credential]] | None = None,
    ) -> None:
        self.layers = layers if layers is not None else [entries or {}]
        self.use_netrc = use_netrc
        self._looked_up: dict[str, Credential | None] = {}  # one run asks for the same few hosts

    @property
    def entries(self) -> dict[str, Credential]:
        """Every entry, earlier layers winning (what a merged auth file would hold)."""
        merged: dict[str, Credential] = {}
        for layer in reversed(self.layers):
            merged.update(layer)
        return merged

    @classmethod
    def discover(cls, explicit: Path | None) -> AuthStore:
        """Load ``explicit`` (which must exist), ``RATTLER_AUTH_FILE`` and ``~/.rattler/credentials.json``."""
        layers: list[dict[str, Credential]] = []
        if explicit is not None:
            if not explicit.is_file():
                raise ConfigError(
                    f"auth file '{explicit}' does not exist; check --auth-file "
                    "(or authentication-override-file in the config)"
                )
            layers.append(cls._read(explicit))
        env_file = os.environ.get("RATTLER_AUTH_FILE")
        if env_file:
            if Path(env_file).is_file():
                layers.append(cls._read(Path(env_file)))
            else:
                log.warning("RATTLER_AUTH_FILE names '%s', which does not exist; it is ignored", env_file)
        default = Path.home() / ".rattler" / "credentials.json"
        if default.is_file():
            layers.append(cls._read(default))
        return cls(layers=layers)

    @staticmethod
    def _read(path: Path) -> dict[str, Credential]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"auth file '{path}' is not valid JSON: {type(exc).__name__}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"auth file '{path}' must be a JSON object of host -> credential")
        return {host.lower(): _parse_credential(value, host, path) for host, value in data.items()}

    def lookup(self, host: str) -> Credential | None:
        """The credential for ``host`` (a host name, or ``s3://bucket``), or None."""
        host = host.lower()
        if host not in self._looked_up:
            self._looked_up[host] = self._find(host)
        return self._looked_up[host]

    def _find(self, host: str) -> Credential | None:
        for layer in self.layers:
            if host in layer:
                return layer[host]
            for pattern, credential in layer.items():
                if pattern.startswith("*.") and host.endswith(pattern[1:]):
                    return credential
        if self.use_netrc and "://" not in host:
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

    def rattler_json(self, kinds: tuple[str, ...] = ("S3Credentials",)) -> dict[str, Any]:
        """The merged entries of the given kinds in rattler's auth-file format (for rattler's client)."""
        out: dict[str, Any] = {}
        for host, c in self.entries.items():
            if "S3Credentials" in kinds and c.s3_access_key_id is not None:
                data = {"access_key_id": c.s3_access_key_id, "secret_access_key": c.s3_secret_access_key}
                if c.s3_session_token:
                    data["session_token"] = c.s3_session_token
                out[host] = {"S3Credentials": data}
        return out
