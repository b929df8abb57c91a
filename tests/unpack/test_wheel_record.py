"""Each wheel member is checked against RECORD (size and hash) in the same read that installs it."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

from pixi_pack_ext.errors import UnpackError
from pixi_pack_ext.testing.python import write_wheel
from pixi_pack_ext.unpack.wheel_install import _Destination, install_wheel

MODULE = "tool/__init__.py"
SCRIPT = "tool-1.0.data/scripts/tool-run"
FILES = {
    MODULE: b"VALUE = 42\n",
    "tool/big.bin": bytes(range(256)) * 4096,  # 1 MiB: read in several steps
    SCRIPT: b"#!python\nimport tool\nprint(tool.VALUE)\n",
}


def _destination(root: Path) -> _Destination:
    scheme = {key: str(root / "site") for key in ("purelib", "platlib")}
    scheme |= {"scripts": str(root / "bin"), "headers": str(root / "include"), "data": str(root)}
    return _Destination(scheme, interpreter=sys.executable, script_kind="posix", overwrite_existing=True)


def _tampered(wheel: Path, member: str, data: bytes) -> Path:
    """A copy of ``wheel`` where ``member`` holds ``data`` but RECORD still describes the old bytes."""
    with zipfile.ZipFile(wheel) as source:
        contents = {info.filename: source.read(info) for info in source.infolist()}
    contents[member] = data
    with zipfile.ZipFile(wheel, "w") as out:
        for name, value in contents.items():
            out.writestr(name, value)
    return wheel


def test_wheel_matching_its_record_installs_every_byte(tmp_path: Path) -> None:
    wheel = write_wheel(tmp_path / "wheels", "tool", "1.0", FILES)
    install_wheel(wheel, _destination(tmp_path / "env"))
    site = tmp_path / "env" / "site"
    assert (site / MODULE).read_bytes() == FILES[MODULE]
    assert (site / "tool" / "big.bin").read_bytes() == FILES["tool/big.bin"]
    script = (tmp_path / "env" / "bin" / "tool-run").read_bytes()
    assert script.startswith(f"#!{sys.executable}\n".encode()) and script.endswith(b"print(tool.VALUE)\n")
    record = (site / "tool-1.0.dist-info" / "RECORD").read_text()
    assert "tool/big.bin,sha256=" in record


@pytest.mark.parametrize(
    ("member", "data"),
    [
        (MODULE, b"VALUE = 43\n"),  # same size, other bytes
        ("tool/big.bin", bytes(range(256)) * 4095),  # shorter
        (SCRIPT, b"#!python\nimport os\nos.system('true')\n"),  # rewritten shebang: rewound, read again
    ],
    ids=["module", "big file", "script"],
)
def test_wheel_member_not_matching_its_record_is_refused(member: str, data: bytes, tmp_path: Path) -> None:
    wheel = _tampered(write_wheel(tmp_path / "wheels", "tool", "1.0", FILES), member, data)
    with pytest.raises(UnpackError) as failure:
        install_wheel(wheel, _destination(tmp_path / "env"))
    assert str(failure.value) == (
        f"installing wheel {wheel.name} failed: hash / size of {member} didn't match RECORD"
    )
    assert not (tmp_path / "env" / "site" / "tool-1.0.dist-info" / "RECORD").exists()


def test_wheel_member_missing_from_record_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    wheel = _tampered(write_wheel(tmp_path / "wheels", "tool", "1.0", FILES), "tool/extra.py", b"x = 1\n")
    with pytest.raises(UnpackError, match=r"tool/extra\.py is not mentioned in RECORD"):
        install_wheel(wheel, _destination(tmp_path / "env"))
    assert not (tmp_path / "env").exists()
