"""Drop the symbol table and debug sections of an ELF shared library, in pure Python.

py-rattler's Linux library carries a 27 MB symbol table (``.symtab`` and its ``.strtab``) that
nothing uses at run time: the dynamic linker reads ``.dynsym``. ``strip`` is not installed on every
machine that packs, so the bundled unpacker removes those sections itself. Only sections that no
segment maps are dropped, and only from the part of the file after the last mapped byte, so the
loaded image is byte for byte the same; anything unexpected leaves the file as it was.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_SHDR = struct.Struct("<IIQQQQIIQQ")
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_NOBITS = 8
SHT_REL = 9
SHT_RELA = 4
SHF_ALLOC = 0x2
SHF_INFO_LINK = 0x40
#: The largest alignment of a moved section: real ones are at most a page; more is a corrupt file.
MAX_ALIGN = 1 << 16


@dataclass
class _Section:
    index: int
    name: int
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    info: int
    align: int
    entsize: int

    def pack(self) -> bytes:
        return _SHDR.pack(
            self.name, self.type, self.flags, self.addr, self.offset, self.size,
            self.link, self.info, self.align, self.entsize,
        )  # fmt: skip


def _section_name(data: bytes, names: _Section, offset: int) -> bytes:
    start = names.offset + offset
    return data[start : data.index(b"\0", start)]


def strip_symbols(data: bytes) -> bytes:
    """``data`` without ``.symtab``, its string table and ``.debug*`` sections (64-bit little-endian
    ELF only); ``data`` itself when it is anything else or its layout is not the usual one."""
    if len(data) < _EHDR.size or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return data
    try:
        return _strip(data)
    except (struct.error, ValueError, IndexError, OverflowError):
        return data


def _strip(data: bytes) -> bytes:
    header = list(_EHDR.unpack_from(data, 0))
    phoff, shoff, phentsize, phnum, shentsize, shnum, shstrndx = (
        header[5], header[6], header[9], header[10], header[11], header[12], header[13],
    )  # fmt: skip
    if shoff == 0 or shentsize != _SHDR.size or phentsize != _PHDR.size or not 0 < shstrndx < shnum:
        return data
    mapped_end = 0
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz, _, _ = _PHDR.unpack_from(data, phoff + i * phentsize)
        if p_type != 0:
            mapped_end = max(mapped_end, p_offset + p_filesz)
    sections = [_Section(i, *_SHDR.unpack_from(data, shoff + i * shentsize)) for i in range(shnum)]
    names = sections[shstrndx]
    dropped: set[int] = set()
    for section in sections[1:]:
        name = _section_name(data, names, section.name)
        if section.flags & SHF_ALLOC:
            continue
        if section.type == SHT_SYMTAB or name.startswith((b".debug", b".zdebug")):
            dropped.add(section.index)
            if section.type == SHT_SYMTAB and section.link != shstrndx:
                dropped.add(section.link)
    if not dropped:
        return data
    for section in sections:
        if section.index in dropped:
            if section.flags & SHF_ALLOC or section.offset < mapped_end:
                return data  # only unmapped bytes after the image may go
            continue
        if section.link in dropped or (section.flags & SHF_INFO_LINK and section.info in dropped):
            return data  # a kept section refers to a dropped one
    kept = [s for s in sections if s.index not in dropped]
    new_index = {s.index: i for i, s in enumerate(kept)}
    out = bytearray(data[:mapped_end])
    for section in kept[1:]:
        if section.offset + (0 if section.type == SHT_NOBITS else section.size) <= mapped_end:
            continue  # inside the image: stays where it is
        if section.offset < mapped_end:
            return data  # straddles the image's end
        if section.type != SHT_NOBITS:
            if section.offset + section.size > len(data) or section.align > MAX_ALIGN:
                return data  # a section past the file's end, or padding no real library has
            align = max(section.align, 1)
            out += b"\0" * (-len(out) % align)
            body = data[section.offset : section.offset + section.size]
            section.offset = len(out)
            out += body
    for section in kept:
        section.link = new_index.get(section.link, section.link) if section.index else 0
        if section.flags & SHF_INFO_LINK or section.type in (SHT_REL, SHT_RELA):
            section.info = new_index.get(section.info, section.info)
    out += b"\0" * (-len(out) % 8)
    header[6] = len(out)
    header[12] = len(kept)
    header[13] = new_index[shstrndx]
    out[: _EHDR.size] = _EHDR.pack(*header)
    for section in kept:
        out += section.pack()
    return bytes(out)
