"""The staged environment's conda-meta records are rewritten in place (open, read, write back): a
package must not be able to make one of them a link, a hard link or a FIFO, so that the write goes
through it to a file outside (or hangs on it)."""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Outcome
from .hostile import (
    Member,
    add_package,
    error_line,
    file_member,
    index_json,
    link_member,
    make_package,
    path_entry,
    special_member,
)

VICTIM = '{"name": "victim"}\n'
#: The package's own record (the one the rewrite opens) and another package's.
RECORD = "conda-meta/evil-1.0-0.json"


def _cases(victim: Path) -> dict[str, tuple[list[dict[str, object]], list[Member]]]:
    return {
        "record as a symlink out": (
            [path_entry(RECORD, softlink=True)],
            [link_member(RECORD, str(victim))],
        ),
        "record as a climbing symlink": (
            [path_entry(RECORD, softlink=True)],
            [link_member(RECORD, "../" * 12 + str(victim).lstrip("/"))],
        ),
        "record as a hard link to another file of the package": (
            [path_entry("share/evil.json", VICTIM.encode()), path_entry(RECORD, VICTIM.encode())],
            [
                file_member("share/evil.json", VICTIM.encode()),
                link_member(RECORD, "share/evil.json", hard=True),
            ],
        ),
        "record as a FIFO": ([path_entry(RECORD, b"")], [special_member(RECORD, tarfile.FIFOTYPE)]),
        "conda-meta as a symlink": (
            [path_entry("conda-meta", softlink=True)],
            [link_member("conda-meta", str(victim.parent))],
        ),
        "record through a folder symlink": (
            [path_entry("share/meta", softlink=True), path_entry("share/meta/evil-1.0-0.json")],
            [link_member("share/meta", "../conda-meta"), file_member("share/meta/evil-1.0-0.json")],
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "record as a symlink out",
        "record as a climbing symlink",
        "record as a hard link to another file of the package",
        "record as a FIFO",
        "conda-meta as a symlink",
        "record through a folder symlink",
    ],
)
def test_a_package_cannot_shape_the_record_rewritten_in_place(
    case: str, members: list[Member], unpack_hostile: Callable[..., Outcome], tmp_path: Path
) -> None:
    victim = tmp_path / "victim.json"
    victim.write_text(VICTIM)
    paths, payload = _cases(victim)[case]
    index = index_json("evil")
    file_name, package = make_package(index, paths, payload, "conda")
    add_package(members, file_name, package, index)
    outcome = unpack_hostile(members)
    line = error_line(outcome.result)
    assert "evil-1.0-0.conda" in line and "conda-meta" in line, line
    assert victim.read_text() == VICTIM
    assert outcome.changed == set()
