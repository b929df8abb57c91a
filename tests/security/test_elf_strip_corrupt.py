"""The ELF stripper (run at pack time on the packer's py-rattler library) given corrupt headers:
it leaves the file as it was instead of failing, filling the memory or writing a cut-short one."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CHECK = textwrap.dedent(
    """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a huge padding fails, not the machine
    from pixi_pack_ext.selfextract.elf_strip import _EHDR, _SHDR, strip_symbols
    data = open(sys.argv[1], "rb").read()
    header = _EHDR.unpack_from(data, 0)
    shoff, shnum = header[6], header[12]
    moved = next(  # a kept section after the loaded image (.comment and the like)
        i for i in range(1, shnum)
        if _SHDR.unpack_from(data, shoff + i * 64)[1] == 1 and not _SHDR.unpack_from(data, shoff + i * 64)[2] & 2
    )
    for field, value in ((8, 1 << 40), (5, 1 << 50), (4, 1 << 62), (8, 1 << 63)):
        bad = bytearray(data)
        entry = list(_SHDR.unpack_from(data, shoff + moved * 64))
        entry[field] = value
        _SHDR.pack_into(bad, shoff + moved * 64, *entry)
        assert strip_symbols(bytes(bad)) == bytes(bad), (field, value)
    for field, value in ((5, 1 << 62), (6, 1 << 62)):  # program / section header offsets
        bad = bytearray(data)
        fields = list(header)
        fields[field] = value
        _EHDR.pack_into(bad, 0, *fields)
        assert strip_symbols(bytes(bad)) == bytes(bad), (field, value)
    print("ok")
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the installed py-rattler is ELF on Linux")
def test_corrupt_section_headers_leave_the_library_as_it_was() -> None:
    import rattler

    library = next(Path(rattler.__file__).parent.glob("*.so"))
    result = subprocess.run(
        [sys.executable, "-c", CHECK, str(library)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
