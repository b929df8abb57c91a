"""The pack's local channel: ``channel/<subdir>/repodata.json`` made from the plan's records.

repodata is written from the lock's records (not re-read from the packages), so repodata patches
that the lock carries (changed depends, constrains, ...) are kept exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

from .metadata import compact_json
from .plan import CondaPackage
from .redact import public_url
from .untrusted import MAX_REPODATA_JSON, UntrustedDataError, load_json, read_limited

#: Fields of a repodata record that only make sense in a lock or a prefix, not in repodata.json.
NON_REPODATA_FIELDS = ("fn",)
#: Where a package came from (its lock record's URL and channel). repodata.json has no such fields,
#: and readers of it (rattler, conda, the Rust pixi-unpack) ignore them; pixi-unpack writes them into
#: the environment's conda-meta records, as an install from the lock does.
ORIGIN_FIELDS = ("url", "channel")
#: Longest origin URL a pack holds.
MAX_URL = 4096


def repodata_entry(package: CondaPackage) -> dict[str, object]:
    """The repodata.json record of one package, from its lock record (its origin without secrets)."""
    data = json.loads(package.record.to_json())
    for key in NON_REPODATA_FIELDS:
        data.pop(key, None)
    for key in ORIGIN_FIELDS:
        value = data.pop(key, None)
        if is_origin_url(value) and is_origin_url(public_url(value)):
            data[key] = public_url(value)
    if "channel" in data:
        data["channel"] = channel_base(str(data["channel"]), str(data.get("subdir", "")))
    data.update(package.repodata_extra)
    return dict(sorted(data.items()))


def is_origin_url(value: object) -> bool:
    """Whether ``value`` can be an origin field: a URL of printable characters, of bounded length
    (a channel named only by its name, as old conda records do, is left out)."""
    return isinstance(value, str) and "://" in value and len(value) <= MAX_URL and value.isprintable()


def channel_base(channel: str, subdir: str) -> str:
    """A channel URL as a lock writes it (``https://host/name/``): conda's records name the
    subdir's URL (``https://host/name/linux-64``), rattler's the channel's, with a slash."""
    base = channel.rstrip("/")
    if subdir and base.endswith("/" + subdir):
        base = base[: -len(subdir) - 1]
    return base + "/"


def build_repodata(subdir: str, packages: list[CondaPackage]) -> dict[str, object]:
    """A repodata.json document for one subdir: ``.tar.bz2`` under packages, ``.conda`` under packages.conda."""
    tar_bz2: dict[str, object] = {}
    conda: dict[str, object] = {}
    for package in sorted(packages, key=lambda p: p.file_name):
        target = conda if package.file_name.endswith(".conda") else tar_bz2
        target[package.file_name] = repodata_entry(package)
    return {
        "info": {"subdir": subdir},
        "packages": tar_bz2,
        "packages.conda": conda,
        "removed": [],
        "repodata_version": 1,
    }


def write_channel_index(channel_dir: Path, subdirs: list[str], packages: list[CondaPackage]) -> None:
    """Write ``repodata.json`` into every subdir folder (empty ones too, like ``noarch`` always)."""
    for subdir in subdirs:
        folder = channel_dir / subdir
        folder.mkdir(parents=True, exist_ok=True)
        document = build_repodata(subdir, [p for p in packages if p.subdir == subdir])
        (folder / "repodata.json").write_text(compact_json(document, sort_keys=False) + "\n")


def read_repodata(path: Path) -> object:
    """One subdir's ``repodata.json`` from a pack, parsed (bounded in size and depth: it is
    untrusted); ``untrusted.repodata_document`` checks what it says."""
    source = f"channel/{path.parent.name}/repodata.json"
    data = read_limited(path, source, max_bytes=MAX_REPODATA_JSON)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UntrustedDataError(f"{source} is malformed: it is not UTF-8 text") from None
    return load_json(text, source, max_bytes=MAX_REPODATA_JSON)
