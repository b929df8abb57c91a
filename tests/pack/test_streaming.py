"""The pipelined parts: packs report files as they land (a folder pack, which does not, is covered
by test_formats), and downloads are written and hashed on the writer thread in order, with
bounded memory."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import damage_package, needs_linux64

from pixi_pack_ext.builtin.formats import tar as tar_format
from pixi_pack_ext.errors import InvalidPackError
from pixi_pack_ext.pack.sinks import DiskWriter, HashingSink
from pixi_pack_ext.unpack import cache_prefill
from pixi_pack_ext.unpack.driver import UnpackOptions, unpack


class _Recorder:
    """A ``PackFiles`` that notes what a format tells, and checks each location against the bytes."""

    def __init__(self) -> None:
        self.ready: list[tuple[str, int]] = []
        self.located: dict[str, bytes] = {}

    def file_ready(self, name: str, path: Path) -> None:
        self.ready.append((name, path.stat().st_size))  # the size it has when it is reported

    def file_located(self, name: str, path: Path, source: Path, offset: int, size: int) -> None:
        assert not path.exists(), f"{name} was located after it was written"
        with open(source, "rb") as f:
            f.seek(offset)
            self.located[name] = f.read(size)


@needs_linux64
def test_tar_reports_every_file_once_complete_and_where_its_bytes_are(prod_tar: Path, tmp_path: Path) -> None:
    with tarfile.open(prod_tar) as archive:
        sizes = {m.name.removeprefix("./"): m.size for m in archive.getmembers() if m.isfile()}
    files = _Recorder()
    pack_dir = tar_format.open_pack(prod_tar, tmp_path / "pack", files)
    assert sorted(files.ready) == sorted(sizes.items())
    on_disk = {p.relative_to(pack_dir).as_posix(): p for p in pack_dir.rglob("*") if p.is_file()}
    assert {n for n, _ in files.ready} == set(on_disk)
    assert files.located == {n: on_disk[n].read_bytes() for n, size in sizes.items() if size}
    packages = [n for n, _ in files.ready if n.endswith((".conda", ".tar.bz2"))]
    assert packages and files.ready.index((packages[0], sizes[packages[0]])) < len(files.ready) - 1


@needs_linux64
def test_packages_extracted_straight_from_the_pack_install_and_run(
    prod_tar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every package (not only big ones) goes through the pipe from the pack to the extractor."""
    monkeypatch.setattr(cache_prefill, "STREAM_MIN_SIZE", 1)
    streamed: list[str] = []
    original = cache_prefill._feed_pipe

    def feed(pipe: Path, *args: object) -> None:
        streamed.append(pipe.name)
        original(pipe, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(cache_prefill, "_feed_pipe", feed)
    prefix = unpack(UnpackOptions(pack=prod_tar, output_directory=tmp_path / "out"))
    with tarfile.open(prod_tar) as archive:
        packages = [m.name for m in archive.getmembers() if m.name.endswith((".conda", ".tar.bz2"))]
    assert len(streamed) == len(packages)
    result = subprocess.run([prefix / "bin" / "hello"], capture_output=True, text=True, check=True)
    assert f"prefix={prefix}" in result.stdout
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".pixi-unpack")] == []


@pytest.mark.parametrize(("cores", "workers"), [(1, 2), (2, 3), (64, cache_prefill.MAX_CONCURRENCY)])
def test_packages_are_extracted_one_per_usable_core_plus_one(
    cores: int, workers: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    with cache_prefill.CachePrefill(tmp_path / "cache") as prefill:
        assert prefill.concurrency == workers


@needs_linux64
def test_a_corrupt_package_streamed_from_the_pack_is_refused(
    prod_tar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_prefill, "STREAM_MIN_SIZE", 1)
    damaged = damage_package(prod_tar, tmp_path / "damaged.tar", "hello-bin")
    with pytest.raises(InvalidPackError, match=r"hello-bin.*is corrupt: expected sha256"):
        unpack(UnpackOptions(pack=damaged, output_directory=tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_sinks_sharing_a_writer_keep_their_bytes_in_order(tmp_path: Path) -> None:
    """Three downloads interleave chunk by chunk through a writer whose budget is smaller than one
    chunk, so every write waits for the disk (back-pressure), and one download restarts halfway."""
    writer = DiskWriter(budget=1 << 10)
    payloads = {name: [os.urandom(3000 + i * 17) for i in range(40)] for name in ("a", "b", "c")}
    progress: list[int] = []
    sinks = {name: HashingSink(tmp_path / name, progress.append, writer=writer) for name in payloads}
    written: dict[str, list[bytes]] = {name: [] for name in payloads}
    for i in range(40):
        for name, sink in sinks.items():
            sink.write(payloads[name][i])
            written[name].append(payloads[name][i])
        if i == 19:
            sinks["b"].restart()
            written["b"].clear()
    writer.close()
    for name, sink in sinks.items():
        data = b"".join(written[name])
        assert sink.offset == len(data)
        assert sink.digests() == (hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest())
        sink.close()
        assert (tmp_path / name).read_bytes() == data
    assert sum(progress) == sum(len(b"".join(w)) for w in written.values())


def test_a_sink_used_after_its_writer_closed_still_writes(tmp_path: Path) -> None:
    """A Ctrl-C can end the run (and close the writer) while downloads are still being cancelled."""
    writer = DiskWriter()
    sink = HashingSink(tmp_path / "late", lambda n: None, md5=False, writer=writer)
    sink.write(b"first ")
    writer.close()
    sink.write(b"second")
    sink.close()
    assert (tmp_path / "late").read_bytes() == b"first second"
    assert sink.digests()[0] == hashlib.sha256(b"first second").hexdigest()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/dev/full is Linux's")
def test_a_write_error_on_the_writer_thread_reaches_the_download(tmp_path: Path) -> None:
    writer = DiskWriter()
    sink = HashingSink(Path("/dev/full"), lambda n: None, writer=writer)
    try:
        sink.write(os.urandom(1 << 16))
        with pytest.raises(OSError) as caught:
            sink.digests()
        assert "No space left" in str(caught.value)
    finally:
        writer.close()


# -- a source that writes the file itself (receive_file) -------------------------------------------


def _writer_in_steps(parts: list[bytes], pause: float = 0.12, replace_at: int | None = None):  # type: ignore[no-untyped-def]
    """A ``write_file`` that appends ``parts`` with pauses (so the sink polls and hashes in between);
    with ``replace_at``, it then swaps the file for another (a new inode) holding the parts in
    reverse order."""
    import asyncio

    async def write_file(path: Path) -> None:
        with open(path, "wb") as f:
            for i, part in enumerate(parts):
                f.write(part)
                f.flush()
                await asyncio.sleep(pause)
                if replace_at == i:
                    fresh = path.with_name(path.name + ".new")
                    fresh.write_bytes(b"".join(reversed(parts)))
                    os.replace(fresh, path)
                    return

    return write_file


@pytest.mark.parametrize("replace_at", [None, 1])
def test_a_file_written_by_the_source_is_hashed_while_it_grows(
    tmp_path: Path, replace_at: int | None
) -> None:
    """A big file is hashed as it grows; one replaced meanwhile is hashed again from its start."""
    import asyncio

    parts = [os.urandom(9 << 20) for _ in range(3)]
    data = b"".join(parts if replace_at is None else reversed(parts))
    progress: list[int] = []
    writer = DiskWriter()
    sink = HashingSink(tmp_path / "big.part", progress.append, writer=writer)
    try:
        asyncio.run(sink.receive_file(_writer_in_steps(parts, replace_at=replace_at)))
        assert sink.offset == len(data) and sum(progress) == len(data)
        assert sink.digests() == (hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest())
    finally:
        sink.close()
        writer.close()
    assert (tmp_path / "big.part").read_bytes() == data


def test_a_stalled_source_write_keeps_its_bytes_for_a_resume(tmp_path: Path) -> None:
    """Nothing written for the idle timeout: the writer is cancelled, what it wrote stays (hashed),
    and the next attempt appends the rest with ``write``."""
    import asyncio

    head, tail = os.urandom(10 << 20), os.urandom(5000)

    async def stalls(path: Path) -> None:
        with open(path, "wb") as f:
            f.write(head)
            f.flush()
            await asyncio.sleep(60)
            f.write(b"never")

    writer = DiskWriter()
    sink = HashingSink(tmp_path / "x.part", lambda n: None, md5=False, writer=writer)
    try:
        with pytest.raises(TimeoutError):
            asyncio.run(sink.receive_file(stalls, idle_timeout=0.4))
        assert sink.offset == len(head)
        sink.write(tail)
        assert sink.digests()[0] == hashlib.sha256(head + tail).hexdigest()
    finally:
        sink.close()
        writer.close()
    assert (tmp_path / "x.part").read_bytes() == head + tail
