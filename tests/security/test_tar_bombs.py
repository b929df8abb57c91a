"""Tar bombs: huge declared sizes, oversized headers, sparse files, 100k tiny entries.

Each is handled in bounded memory (the peak RSS of the pixi-unpack process, read from the kernel's
accounting of that one child) and refused or unpacked cleanly. The bound is a generous memory
bound, not a timing.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import cli

from .conftest import Outcome
from .hostile import Member, error_line, snapshot, write_pack

#: A generous ceiling for one pixi-unpack process (Python, rattler and the work itself).
MAX_RSS = 300 * 1024 * 1024


@dataclass
class Measured:
    returncode: int
    stderr: bytes
    max_rss: int

    @property
    def result(self) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess([], self.returncode, b"", self.stderr)


#: Runs the command and writes the peak RSS of its children to a file. A small launcher is needed
#: because a child's peak RSS includes the image it was forked from (the whole test process).
LAUNCHER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024))
sys.exit(code if code >= 0 else 128 - code)
"""


def run_measured(args: list[str | os.PathLike[str]], feed: Iterator[bytes] | None = None) -> Measured:
    """Run pixi-unpack, stream ``feed`` into its stdin, and return its own peak RSS (bytes)."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "rss"
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(report), cli("pixi-unpack"), *map(str, args)],
            stdin=subprocess.PIPE if feed is not None else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        stderr: list[bytes] = []
        reader = threading.Thread(target=lambda: stderr.append(process.stderr.read()))  # type: ignore[union-attr]
        reader.start()
        if feed is not None:
            assert process.stdin is not None
            try:
                for chunk in feed:
                    process.stdin.write(chunk)
            except BrokenPipeError:
                pass  # the unpacker refused and stopped reading: what a bomb should get
            finally:
                with contextlib.suppress(BrokenPipeError):
                    process.stdin.close()
        returncode = process.wait()
        reader.join()
        return Measured(returncode, b"".join(stderr), int(report.read_text()))


def _header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")


def _pax_bomb(declared: int, kind: bytes) -> bytes:
    """One extended-header member that declares ``declared`` bytes (its data follows, or not)."""
    info = tarfile.TarInfo("././@PaxHeader" if kind == tarfile.XHDTYPE else "././@LongLink")
    info.type, info.size = kind, declared
    return info.tobuf(tarfile.GNU_FORMAT if kind == tarfile.GNUTYPE_LONGNAME else tarfile.USTAR_FORMAT)


def _zeros(total: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    block = b"\0" * chunk
    for _ in range(total // chunk):
        yield block


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME], ids=["pax", "gnu-longname"])
def test_oversized_header_streamed_is_refused_in_bounded_memory(kind: bytes, tmp_path: Path) -> None:
    """A header that declares 2 GB, followed by 400 MB of real data on stdin, is not buffered."""
    output = tmp_path / "out"

    def feed() -> Iterator[bytes]:
        yield _pax_bomb(2 << 30, kind)
        yield from _zeros(400 << 20)

    measured = run_measured(["-", "-o", output], feed())
    line = error_line(measured.result)
    assert "extended header declares" in line, line
    assert measured.max_rss < MAX_RSS, f"peak RSS {measured.max_rss >> 20} MB"
    assert not output.exists()


def test_oversized_header_in_a_file_is_refused(tmp_path: Path) -> None:
    pack = tmp_path / "bomb.tar"
    pack.write_bytes(_pax_bomb(2 << 30, tarfile.XHDTYPE) + b"\0" * 4096)
    before = snapshot(tmp_path)
    measured = run_measured([pack, "-o", tmp_path / "out"])
    assert "extended header declares" in error_line(measured.result)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("stdin", [False, True], ids=["file", "stdin"])
def test_huge_declared_file_size_is_refused(stdin: bool, tmp_path: Path) -> None:
    """A member claiming 1 TiB with a few bytes behind it: refused at the end of the data."""
    info = tarfile.TarInfo("channel/noarch/huge.conda")
    info.size = 1 << 40
    data = _header(info) + b"x" * 10_000
    pack = tmp_path / "bomb.tar"
    pack.write_bytes(data)
    before = snapshot(tmp_path)
    if stdin:
        measured = run_measured(["-", "-o", tmp_path / "out"], iter([data]))
    else:
        measured = run_measured([pack, "-o", tmp_path / "out"])
    line = error_line(measured.result)
    assert "not a readable tar archive" in line, line
    assert measured.max_rss < MAX_RSS
    assert snapshot(tmp_path) == before


def test_sparse_member_is_refused(members: list[Member], unpack_hostile: Callable[..., Outcome]) -> None:
    """A sparse file of 1 TiB real size in 4 bytes of archive would fill the disk with zeros."""
    info = tarfile.TarInfo("GNUSparseFile.0/big")
    sparse_map = b"1\n%d\n4\n" % ((1 << 40) - 4)
    data = sparse_map + b"\0" * (512 - len(sparse_map)) + b"abcd"
    info.size = len(data)
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": "big",
        "GNU.sparse.realsize": str(1 << 40),
    }
    members.insert(0, Member(info, data))
    outcome = unpack_hostile(members)
    assert "packs hold no sparse files" in error_line(outcome.result)
    assert outcome.changed == set()


def _many_empty_files(count: int) -> bytes:
    """``count`` distinct empty files (``junk/000000`` ...), headers patched from one template."""
    template = bytearray(tarfile.TarInfo("junk/000000").tobuf(tarfile.USTAR_FORMAT))
    base = sum(template[:148]) + sum(template[156:]) + 8 * 32 - sum(b"000000")
    out = io.BytesIO()
    for i in range(count):
        digits = b"%06d" % i
        template[5:11] = digits
        template[148:156] = b"%06o\0 " % (base + sum(digits))
        out.write(template)
    return out.getvalue()


def test_many_tiny_entries_unpack_in_bounded_memory(good_pack: Path, tmp_path: Path) -> None:
    """100k entries ahead of a real pack: scanned, extracted and cleaned up in flat memory (the
    peak is close to that of the bare pack: nothing is kept per entry)."""
    bare = run_measured([good_pack, "-o", tmp_path / "bare"])
    assert bare.returncode == 0, bare.stderr.decode()
    pack = tmp_path / "many.tar"
    with open(pack, "wb") as f:
        f.write(_many_empty_files(100_000))
        f.write(good_pack.read_bytes())  # no end-of-archive blocks before the good pack's own
    assert pack.stat().st_size == 100_000 * 512 + good_pack.stat().st_size
    output = tmp_path / "out"
    many = run_measured([pack, "-o", output])
    assert many.returncode == 0, many.stderr.decode()
    assert many.max_rss < MAX_RSS, f"peak RSS {many.max_rss >> 20} MB"
    assert many.max_rss - bare.max_rss < 64 * 1024 * 1024, (bare.max_rss >> 20, many.max_rss >> 20)
    assert sorted(p.name for p in output.iterdir()) == ["activate.sh", "env"]
    assert (output / "env" / "conda-meta" / "history").is_file()


def test_pack_written_by_write_pack_round_trips(members: list[Member], tmp_path: Path) -> None:
    """The helper that writes hostile packs writes valid ones when nothing is changed."""
    pack = write_pack(tmp_path / "same.tar", members)
    measured = run_measured([pack, "-o", tmp_path / "out"])
    assert measured.returncode == 0, measured.stderr.decode()
