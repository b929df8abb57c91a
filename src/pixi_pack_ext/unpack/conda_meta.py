"""The environment's ``conda-meta`` records, as an install from the lock writes them.

rattler installs a pack's packages from the pack's own channel through a package cache that is
removed afterwards, so the records it writes name a temporary ``file://`` URL and channel and point
at deleted folders (``extracted_package_dir``, ``link.source``). The pack's repodata keeps each
package's original URL and channel (``pixi_pack_ext.channel.ORIGIN_FIELDS``); they replace the temporary ones,
and the paths into the removed cache are left out. ``conda list -p env`` then shows the real
channels, and ``pixi-pack --prefix env`` finds the packages where they came from.

``link`` stays, as conda and rattler write it, with its link type; its ``source`` (the cache
folder) is the empty path: readers such as conda-pack expect the field and treat a source that is
not there as a package whose cache was cleared.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import rattler

from ..channel import is_origin_url
from ..errors import InvalidPackError

#: Fields of a conda-meta record that name the package cache the install used (gone afterwards).
CACHE_FIELDS = ("extracted_package_dir", "package_tarball_full_path")
#: The field naming how a package was linked and from which cache folder (kept, without the folder).
LINK_FIELD = "link"


@dataclass(frozen=True)
class Origin:
    """Where a package of the pack came from, as its repodata says."""

    url: str | None
    channel: str | None


def read_origin(entry: dict[str, object], subdir: str, file_name: str) -> Origin:
    """The origin fields of one untrusted repodata entry, checked: absent, or a URL of printable
    characters of bounded length."""
    values: dict[str, str | None] = {}
    for key in ("url", "channel"):
        value = entry.get(key)
        if value is None:
            values[key] = None
            continue
        if not is_origin_url(value):
            shown = repr(value)[:80]
            raise InvalidPackError(
                f"channel/{subdir}/repodata.json has an invalid '{key}' for {file_name} ({shown}); "
                "it must be a URL"
            )
        assert isinstance(value, str)
        values[key] = value
    return Origin(url=values["url"], channel=values["channel"])


def record_path(prefix: Path, record: rattler.RepoDataRecord) -> Path:
    """Where rattler wrote the conda-meta record of ``record``."""
    return prefix / "conda-meta" / f"{record.name.normalized}-{record.version}-{record.build}.json"


def restore_origins(
    prefix: Path, records: list[rattler.RepoDataRecord], origins: dict[str, Origin], *, in_place: bool = False
) -> None:
    """Rewrite each record's conda-meta file with its original URL and channel (``origins`` is keyed
    by the URL the install used) and without the paths into the removed package cache.

    ``in_place``: the files are rewritten where they are, not replaced by new ones; only for an
    environment still in its staging folder (nothing else holds its files, and a failure discards
    it). Creating a file is what this step cost most (~0.7 ms each on ext4 after an install's many
    deletions)."""
    for record in records:
        path = record_path(prefix, record)
        if in_place:
            with open(path, "r+", encoding="utf-8") as f:
                text = _restored(json.load(f), origins.get(record.url))
                f.seek(0)
                f.write(text)
                f.truncate()
            continue
        text = _restored(json.loads(path.read_text(encoding="utf-8")), origins.get(record.url))
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, path)


def _restored(data: dict[str, object], origin: Origin | None) -> str:
    """The text of a conda-meta record with ``origin``'s URL and channel and no cache paths."""
    if origin is not None:
        if origin.url is not None:
            data["url"] = origin.url
        if origin.channel is not None:
            data["channel"] = origin.channel
    for key in CACHE_FIELDS:
        data.pop(key, None)
    link = data.get(LINK_FIELD)
    if isinstance(link, dict):
        data[LINK_FIELD] = {**link, "source": ""}
    # on one line, so that the C encoder writes it: an indented dump runs in Python, ~0.1 ms a
    # record, a tenth of a second for a thousand packages; conda, rattler and pixi read either
    return json.dumps(data) + "\n"
