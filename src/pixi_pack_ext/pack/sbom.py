"""The pack's SBOM: ``sbom.cdx.json``, CycloneDX 1.6 JSON.

One component per conda package (``pkg:conda/NAME@VERSION?build=&channel=&subdir=&type=``, its
licence from its repodata record, its sha256) and per wheel (``pkg:pypi/NAME@VERSION``, its
sha256); the environment and platform are the metadata's component and properties.

The bytes depend only on the pack's content: the serial number is derived from it, and the
timestamp is ``$SOURCE_DATE_EPOCH`` when set (else there is none), so packs stay reproducible.
cyclonedx-python-lib and packageurl-python are imported only here, when an SBOM is written
(never by pixi-unpack).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import PackError
from ..metadata import compact_json
from ..redact import public_url

if TYPE_CHECKING:
    from ..plan import PackPlan

SBOM_FILE = "sbom.cdx.json"
#: The namespace of the UUIDs derived from a pack's content (a fixed, random one).
_SERIAL_NAMESPACE = uuid.UUID("6f1b2b43-3d0c-4f5e-9a43-2f6b8d2f7c11")


def _pypi_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _channel(url: str) -> str:
    """The channel as the SBOM names it: without credentials or tokens, and none for a local folder (a
    ``file://`` channel names a path on the packing machine, no source a reader can look up)."""
    if not url or url.startswith("file:") or "://" not in url:
        return ""
    return public_url(url).rstrip("/")


def _timestamp() -> datetime.datetime | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if not value:
        return None
    try:
        return datetime.datetime.fromtimestamp(int(value), tz=datetime.timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise PackError(f"SOURCE_DATE_EPOCH '{value}' is not a number of seconds") from None


def _licences(text: str, cache: dict[str, list[dict[str, object]]]) -> list[dict[str, object]]:
    """A record's licence as CycloneDX: an SPDX id, an SPDX expression, or a plain name
    (cyclonedx-python-lib's licence factory decides which)."""
    text = text.strip()
    if not text:
        return []
    if text not in cache:
        from cyclonedx.contrib.license.factories import LicenseFactory
        from cyclonedx.model.license import LicenseExpression

        made = LicenseFactory().make_from_string(text)
        if isinstance(made, LicenseExpression):
            cache[text] = [{"expression": made.value}]
        elif made.id is not None:
            cache[text] = [{"license": {"id": made.id}}]
        else:
            cache[text] = [{"license": {"name": made.name or text}}]
    return cache[text]


def _sha256(value: str | None) -> list[dict[str, str]]:
    return [{"alg": "SHA-256", "content": value}] if value else []


def sbom_json(
    plan: PackPlan, wheel_sha256: dict[str, str], targets: dict[str, list[str]] | None = None
) -> str:
    """The CycloneDX 1.6 JSON of ``plan``; ``wheel_sha256`` gives each wheel's sha256 by file name,
    ``targets`` the platforms of each environment of a pack of several (default: the plan's).

    The document is assembled here (purls by packageurl-python, licences by cyclonedx-python-lib's
    factory) rather than through the library's object model, whose dependency bookkeeping takes
    time quadratic in the number of packages (six seconds for a thousand); the tests validate
    the result against the CycloneDX schema with the library's validator."""
    from packageurl import PackageURL

    licence_cache: dict[str, list[dict[str, object]]] = {}
    components: list[dict[str, object]] = []
    targets = targets or {plan.environment: [plan.platform]}
    names = ", ".join(targets)
    platforms = sorted({p for ps in targets.values() for p in ps})
    identity: list[str] = [f"{name}={','.join(ps)}" for name, ps in targets.items()]
    for package in sorted(plan.conda, key=lambda p: p.pack_path):
        record = package.record
        channel = _channel(str(record.channel or ""))
        kind = "conda" if package.file_name.endswith(".conda") else "tar.bz2"
        qualifiers = {"build": str(record.build), "subdir": package.subdir, "type": kind}
        properties = [{"name": "conda:build", "value": str(record.build)}]
        if channel:
            qualifiers["channel"] = channel
            properties.append({"name": "conda:channel", "value": channel})
        properties.append({"name": "conda:subdir", "value": package.subdir})
        purl = PackageURL(
            type="conda", name=package.name, version=str(record.version), qualifiers=qualifiers
        ).to_string()
        component: dict[str, object] = {
            "bom-ref": purl,
            "type": "library",
            "name": package.name,
            "version": str(record.version),
            "purl": purl,
            "hashes": _sha256(package.sha256),
            "licenses": _licences(record.license or "", licence_cache),
            "properties": properties,
        }
        components.append({k: v for k, v in component.items() if v != []})
        identity.append(f"{purl} {package.sha256}")
    for wheel in sorted((w for w in plan.pypi if w.is_wheel), key=lambda w: w.file_name):
        sha256 = wheel.sha256 or wheel_sha256.get(wheel.file_name)
        purl = PackageURL(type="pypi", name=_pypi_name(wheel.name), version=wheel.version).to_string()
        component = {
            "bom-ref": f"{purl}#{wheel.file_name}",
            "type": "library",
            "name": wheel.name,
            "version": wheel.version,
            "purl": purl,
            "hashes": _sha256(sha256),
            "properties": [{"name": "pypi:file", "value": wheel.file_name}],
        }
        components.append({k: v for k, v in component.items() if v != []})
        identity.append(f"{purl} {wheel.file_name} {sha256}")

    serial = uuid.uuid5(_SERIAL_NAMESPACE, hashlib.sha256("\n".join(identity).encode()).hexdigest())
    environment_ref = f"pixi-environment:{names}"
    metadata: dict[str, object] = {
        "tools": {"components": [{"type": "application", "name": "pixi-pack-ext", "version": __version__}]},
        "component": {
            "bom-ref": environment_ref,
            "type": "application",
            "name": names,
            "description": f"pixi environment(s) {names} for {', '.join(platforms)}, packed by pixi-pack-ext",
            "properties": [{"name": "pixi:platform", "value": p} for p in platforms],
        },
        "properties": [
            *({"name": "pixi:environment", "value": name} for name in targets),
            *({"name": "pixi:platform", "value": p} for p in platforms),
        ],
    }
    timestamp = _timestamp()
    if timestamp is not None:
        metadata["timestamp"] = timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    refs = [str(c["bom-ref"]) for c in components]
    bom = {
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": serial.urn,
        "version": 1,
        "metadata": metadata,
        "components": components,
        # The environment holds every package; the lock records no edges between them here.
        "dependencies": [{"ref": environment_ref, "dependsOn": refs}, *({"ref": ref} for ref in refs)],
    }
    return compact_json(bom) + "\n"


def write_sbom(plan: PackPlan, staging: Path, targets: dict[str, list[str]] | None = None) -> None:
    """Write ``sbom.cdx.json`` into the pack folder (after the wheels were fetched into it)."""
    from ..manifest import sha256_file

    wheel_sha256 = {
        w.file_name: sha256_file(staging / w.pack_path)
        for w in plan.pypi
        if w.is_wheel and not w.sha256 and (staging / w.pack_path).is_file()
    }
    (staging / SBOM_FILE).write_text(sbom_json(plan, wheel_sha256, targets), encoding="utf-8")
