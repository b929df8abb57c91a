"""``environment.ps1``: its layout, its bundled unpacker's Windows wheels and the escape codec that
keeps ``#>`` out of its payload comment."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import run
from hypothesis import given
from hypothesis import strategies as st

from pixi_pack_ext.selfextract.layout import PS1_TRAILER, escape, unescape
from pixi_pack_ext.selfextract.reader import PayloadReader, copy_unpacker, read_layout
from pixi_pack_ext.selfextract.writer import _Escaper

from .helpers import _decode_region


def test_ps1_layout_crlf_markers_offsets(workspace: Path, tmp_path: Path) -> None:
    fake = tmp_path / "pixi-unpack.exe"
    fake.write_bytes(b"MZ" + bytes(range(256)) * 64 + b"#>#~>##>" * 50)  # '#>' must not end the comment
    script = tmp_path / "environment.ps1"
    tar_file = tmp_path / "environment.tar"
    run("pixi-pack", workspace, "-e", "prod", "-p", "win-64", "--create-executable",
        "--pixi-unpack-source", fake, "-o", script)  # fmt: skip
    run("pixi-pack", workspace, "-e", "prod", "-p", "win-64", "-o", tar_file)
    data = script.read_bytes()
    layout = read_layout(script)
    assert layout is not None
    assert layout.script == "ps1" and layout.platform == "win-64" and layout.unpacker == "executable"
    assert layout.file_size == len(data)

    header = data[: layout.header_size]
    assert header.endswith(b"\r\n<#\r\n")
    assert b"\n" not in header.replace(b"\r\n", b"")  # CRLF line endings only
    assert b"$PIXI_PACK_ARCHIVE_OFFSET = %d\r\n" % layout.archive_offset in header
    assert b"$PIXI_PACK_UNPACKER_SHA256 = '%s'\r\n" % (layout.unpacker_sha256 or "").encode() in header
    assert b"$PIXI_PACK_ARCHIVE_SHA256 = '%s'\r\n" % layout.archive_sha256.encode() in header
    assert header.count(b"<#") == 1 and b"#>" not in header

    payload = data[layout.header_size : layout.file_size - len(PS1_TRAILER)]
    assert b"#>" not in payload  # the block comment holding the payload cannot end early
    assert data.endswith(PS1_TRAILER)
    assert layout.archive_offset == layout.header_size  # header | tar | CRLF | unpacker | trailer
    assert data[layout.unpacker_offset - 2 : layout.unpacker_offset] == b"\r\n"
    archive_end = layout.archive_offset + layout.archive_size
    assert hashlib.sha256(data[layout.archive_offset : archive_end]).hexdigest() == layout.archive_sha256
    unpacker_end = layout.unpacker_offset + layout.unpacker_size
    assert hashlib.sha256(data[layout.unpacker_offset : unpacker_end]).hexdigest() == layout.unpacker_sha256
    assert _decode_region(script, layout.unpacker_offset, layout.unpacker_size) == fake.read_bytes()
    assert _decode_region(script, layout.archive_offset, layout.archive_size) == tar_file.read_bytes()

    copied = tmp_path / "unpacker"
    copy_unpacker(script, layout, copied)
    assert copied.read_bytes() == fake.read_bytes()
    # The reader pixi-unpack uses gives the same tar, and checks the hash.
    with open(script, "rb") as f:
        reader = PayloadReader(f, script, layout)
        chunks = []
        while block := reader.read(7777):
            chunks.append(block)
        reader.verify()
    assert b"".join(chunks) == tar_file.read_bytes()


def test_ps1_with_the_bundled_unpacker_carries_windows_wheels(workspace: Path, tmp_path: Path) -> None:
    script = tmp_path / "environment.ps1"
    packed = run("pixi-pack", workspace, "-e", "prod", "-p", "win-64", "--create-executable", "-o", script,
                 timeout=600, check=False)  # fmt: skip
    if packed.returncode != 0 and b"could not get the wheels" in packed.stderr:
        pytest.skip("the Python index is not reachable and no win-64 wheels are cached")
    assert packed.returncode == 0, packed.stderr.decode()
    layout = read_layout(script)
    assert layout is not None and layout.unpacker == "python"
    bundle = zipfile.ZipFile(io.BytesIO(_decode_region(script, layout.unpacker_offset, layout.unpacker_size)))
    names = bundle.namelist()
    wheels = json.loads(bundle.read("bundle.json"))["wheels"]
    assert "__main__.py" in names and "lib/pixi_pack_ext/cli/unpack.py" in names
    assert any(w.startswith("py_rattler-") and w.endswith("win_amd64.whl") for w in wheels)
    assert any(n.startswith("native/rattler/") and n.endswith(".pyd") for n in names)
    assert "lib/tomli/__init__.py" in names  # Python 3.10 targets need it
    assert not any(n.startswith("lib/httpx/") or n.startswith("httpx-") for n in [*names, *wheels])
    assert not any("manylinux" in w for w in wheels)
    with tarfile.open(
        fileobj=io.BytesIO(_decode_region(script, layout.archive_offset, layout.archive_size))
    ) as tar:
        assert "pixi-pack.json" in tar.getnames()


@given(st.binary(max_size=600).map(lambda b: b.replace(b"a", b"#").replace(b"b", b"~").replace(b"c", b">")))
def test_escape_round_trips_and_never_holds_the_comment_end(data: bytes) -> None:
    stored = escape(data)
    assert b"#>" not in stored
    assert unescape(stored) == data


@given(
    st.binary(max_size=400).map(lambda b: b.replace(b"a", b"#").replace(b"b", b"~").replace(b"c", b">")),
    st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=30),
)
def test_streaming_escape_matches_whole_escape(data: bytes, cuts: list[int]) -> None:
    out = io.BytesIO()
    escaper = _Escaper(out, hashlib.sha256())
    position = 0
    for cut in cuts:
        escaper.write(data[position : position + cut])
        position += cut
    escaper.write(data[position:])
    escaper.close()
    assert out.getvalue() == escape(data)
