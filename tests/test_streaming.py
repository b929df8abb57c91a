"""The pipelined parts: packs report files as they land (a folder pack, which does not, is covered
by test_formats), and downloads are written and hashed on the writer thread in order, with
bounded memory."""

from __future__ import annotations

import hashlib
import os
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import needs_linux64, pack_prod

from pixi_pack_ext.builtin.formats import tar as tar_format
from pixi_pack_ext.fetch import DiskWriter, HashingSink


@pytest.fixture(scope="module")
def prod_tar(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("streaming") / "environment.tar"
    pack_prod(workspace, out)
    return out


@needs_linux64
def test_tar_reports_every_file_once_and_complete(prod_tar: Path, tmp_path: Path) -> None:
    with tarfile.open(prod_tar) as archive:
        sizes = {m.name.removeprefix("./"): m.size for m in archive.getmembers() if m.isfile()}
    reported: list[tuple[str, int]] = []

    def file_ready(name: str, path: Path) -> None:
        reported.append((name, path.stat().st_size))  # the size it has when it is reported

    pack_dir = tar_format.open_pack(prod_tar, tmp_path / "pack", file_ready)
    assert sorted(reported) == sorted(sizes.items())
    assert {n for n, _ in reported} == {
        p.relative_to(pack_dir).as_posix() for p in pack_dir.rglob("*") if p.is_file()
    }
    packages = [n for n, _ in reported if n.endswith((".conda", ".tar.bz2"))]
    assert packages and reported.index((packages[0], sizes[packages[0]])) < len(reported) - 1


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
