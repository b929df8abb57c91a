"""The pack's SBOM: ``sbom.cdx.json``, CycloneDX 1.6 JSON, written with cyclonedx-python-lib.

One component per conda package (``pkg:conda/NAME@VERSION?build=&channel=&subdir=&type=``, its
licence from its repodata record, its sha256) and per wheel (``pkg:pypi/NAME@VERSION``, its
sha256); the environment and platform are the metadata's component and properties.

The bytes depend only on the pack's content: the serial number is derived from it, and the
timestamp is ``$SOURCE_DATE_EPOCH`` when set (else there is none), so packs stay reproducible.
cyclonedx-python-lib is imported only here, when an SBOM is written (never by pixi-unpack).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import PackError
from ..redact import redact_url

if TYPE_CHECKING:
    from ..plan import PackPlan

SBOM_FILE = "sbom.cdx.json"
#: The namespace of the UUIDs derived from a pack's content (a fixed, random one).
_SERIAL_NAMESPACE = uuid.UUID("6f1b2b43-3d0c-4f5e-9a43-2f6b8d2f7c11")


def _pypi_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _timestamp() -> datetime.datetime | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if not value:
        return None
    try:
        return datetime.datetime.fromtimestamp(int(value), tz=datetime.timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise PackError(f"SOURCE_DATE_EPOCH '{value}' is not a number of seconds") from None


def sbom_json(plan: PackPlan, wheel_sha256: dict[str, str]) -> str:
    """The CycloneDX JSON of ``plan``; ``wheel_sha256`` gives each wheel's sha256 by file name."""
    from cyclonedx.contrib.license.factories import LicenseFactory
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    licences = LicenseFactory()
    components: list[Component] = []
    identity: list[str] = [plan.environment, plan.platform]
    for package in sorted(plan.conda, key=lambda p: p.pack_path):
        record = package.record
        channel = redact_url(str(record.channel or "")).rstrip("/")
        kind = "conda" if package.file_name.endswith(".conda") else "tar.bz2"
        qualifiers = {"build": str(record.build), "subdir": package.subdir, "type": kind}
        if channel:
            qualifiers["channel"] = channel
        purl = PackageURL(type="conda", name=package.name, version=str(record.version), qualifiers=qualifiers)
        properties = [
            Property(name="conda:subdir", value=package.subdir),
            Property(name="conda:build", value=str(record.build)),
        ]
        if channel:
            properties.append(Property(name="conda:channel", value=channel))
        licence = (record.license or "").strip()
        components.append(
            Component(
                name=package.name,
                version=str(record.version),
                type=ComponentType.LIBRARY,
                bom_ref=purl.to_string(),
                purl=purl,
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=package.sha256)]
                if package.sha256
                else [],
                licenses=[licences.make_from_string(licence)] if licence else [],
                properties=properties,
            )
        )
        identity.append(f"{purl.to_string()} {package.sha256}")
    for wheel in sorted((w for w in plan.pypi if w.is_wheel), key=lambda w: w.file_name):
        sha256 = wheel.sha256 or wheel_sha256.get(wheel.file_name)
        purl = PackageURL(type="pypi", name=_pypi_name(wheel.name), version=wheel.version)
        components.append(
            Component(
                name=wheel.name,
                version=wheel.version,
                type=ComponentType.LIBRARY,
                bom_ref=f"{purl.to_string()}#{wheel.file_name}",
                purl=purl,
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=sha256)] if sha256 else [],
                properties=[Property(name="pypi:file", value=wheel.file_name)],
            )
        )
        identity.append(f"{purl.to_string()} {wheel.file_name} {sha256}")

    serial = uuid.uuid5(_SERIAL_NAMESPACE, hashlib.sha256("\n".join(identity).encode()).hexdigest())
    environment = Component(
        name=plan.environment,
        type=ComponentType.APPLICATION,
        bom_ref=f"pixi-environment:{plan.environment}",
        description=f"pixi environment '{plan.environment}' for {plan.platform}, packed by pixi-pack-ext",
        properties=[Property(name="pixi:platform", value=plan.platform)],
    )
    bom = Bom(
        serial_number=serial,
        components=components,
        metadata=BomMetaData(
            component=environment,
            timestamp=_timestamp(),
            properties=[
                Property(name="pixi:environment", value=plan.environment),
                Property(name="pixi:platform", value=plan.platform),
                Property(name="pixi-pack-ext:version", value=__version__),
            ],
        ),
    )
    bom.register_dependency(environment, components)  # the environment holds every package
    text = JsonV1Dot6(bom).output_as_string()
    data = json.loads(text)
    if bom.metadata.timestamp is None or _timestamp() is None:
        data.get("metadata", {}).pop("timestamp", None)  # the library fills "now" in otherwise
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def write_sbom(plan: PackPlan, staging: Path) -> None:
    """Write ``sbom.cdx.json`` into the pack folder (after the wheels were fetched into it)."""
    from ..manifest import sha256_file

    wheel_sha256 = {
        w.file_name: sha256_file(staging / w.pack_path)
        for w in plan.pypi
        if w.is_wheel and not w.sha256 and (staging / w.pack_path).is_file()
    }
    (staging / SBOM_FILE).write_text(sbom_json(plan, wheel_sha256), encoding="utf-8")
