"""--use-cache trusts a verified entry by its stamp (size, mtime, inode) instead of re-hashing it,
and still catches a rewritten or replaced file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import make_workspace, pack_prod

from pixi_pack_ext.pack import download_cache
from pixi_pack_ext.pack.download_cache import DownloadCache
from pixi_pack_ext.pack.fetch_item import FetchItem
from pixi_pack_ext.testing.python import sha256_of
from pixi_pack_ext.testing.world import ChannelServer


def test_every_cached_package_is_stamped_and_a_stamped_hit_is_not_read(
    channel_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ChannelServer(channel_dir) as server:
        ws = make_workspace(tmp_path / "ws", server.url)
        cache = tmp_path / "cache"
        pack_prod(ws, tmp_path / "cold.tar", "--use-cache", cache)
    entries = [
        p for p in cache.rglob("*") if p.name.endswith((".conda", ".tar.bz2")) and ".verified" not in p.parts
    ]
    stamps = sorted(p.name for p in (cache / ".verified").iterdir())
    assert stamps == sorted(f"{p.parent.name}--{p.name}.stamp" for p in entries)

    # A hit with a matching stamp is used without hashing; a touched file is hashed again.
    entry = entries[0]
    item = FetchItem(
        label="x",
        url="http://unused/",
        dest=tmp_path / "dest" / entry.name,
        sha256=sha256_of(entry),
        cache_key=f"{entry.parent.name}/{entry.name}",
    )
    store = DownloadCache(cache)
    store.use(item)  # links it; its stamp is already right

    def no_hashing(path: Path, *, md5: bool = True) -> tuple[str, str]:
        raise AssertionError(f"{path} was hashed")

    monkeypatch.setattr(download_cache, "hash_file", no_hashing)
    assert store.verified_hit(item) == entry
    # The lock-free path takes a stamped hit as it is, and nothing else.
    item.dest.unlink()
    assert store.use_stamped(item) and item.dest.read_bytes() == entry.read_bytes()
    other = FetchItem(
        label="y",
        url="http://unused/",
        dest=tmp_path / "dest" / "y",
        sha256="0" * 64,
        cache_key=item.cache_key,
    )
    assert not store.use_stamped(other) and not other.dest.exists()
    os.utime(entry)
    assert not store.use_stamped(item), "a touched entry was used without being hashed"
    with pytest.raises(AssertionError, match="was hashed"):
        store.verified_hit(item)


def test_rewritten_entry_is_caught_and_hits_write_no_stamps(channel_dir: Path, tmp_path: Path) -> None:
    """A same-size rewrite changes the mtime: the entry is re-hashed, found corrupt and fetched
    again; the pack is the same as the first one. Plain hits leave the stamps as they were."""
    with ChannelServer(channel_dir) as server:
        ws = make_workspace(tmp_path / "ws", server.url)
        cache = tmp_path / "cache"
        pack_prod(ws, tmp_path / "cold.tar", "--use-cache", cache)
        stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (cache / ".verified").iterdir()}
        pack_prod(ws, tmp_path / "warm.tar", "--use-cache", cache)
        assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (cache / ".verified").iterdir()} == stamps

        victim = next(cache.glob("linux-64/hello-bin-*.conda"))
        data = bytearray(victim.read_bytes())
        data[-1] ^= 0xFF
        victim.write_bytes(bytes(data))
        requests = server.log.count()
        pack_prod(ws, tmp_path / "healed.tar", "--use-cache", cache)
        assert server.log.count() == requests + 1
    assert (
        sha256_of(tmp_path / "healed.tar")
        == sha256_of(tmp_path / "cold.tar")
        == sha256_of(tmp_path / "warm.tar")
    )
