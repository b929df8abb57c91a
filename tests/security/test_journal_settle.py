"""A failed delta update is rolled back while rattler's link threads may still be writing.

rattler goes on linking the package it was at after another one failed (a package of 60,000 files
kept being linked for ~0.5 s after ``install`` raised): a delta pack decides how long that lasts.
The rollback waits for the environment to stay unchanged, and never says the environment was left
as it was while something went on writing into it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pixi_pack_ext.errors import UnpackError
from pixi_pack_ext.unpack import journal as journal_module
from pixi_pack_ext.unpack.journal import PrefixJournal


@pytest.fixture
def env(tmp_path: Path) -> Path:
    prefix = tmp_path / "out" / "env"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "tool").write_text("original\n")
    (prefix / "share" / "doc").mkdir(parents=True)
    (prefix / "share" / "doc" / "readme").write_text("readme\n")
    return prefix


class LinkThread:
    """Stands for a link thread of a large package: writes a new file (its folder made as needed),
    then another, ``files`` of them or until stopped; ``pause_after`` files in, it stops writing for
    ``pause`` seconds."""

    def __init__(
        self, prefix: Path, files: int | None = None, pause_after: int = -1, pause: float = 0
    ) -> None:
        self.prefix, self.files, self.pause_after, self.pause = prefix, files, pause_after, pause
        self.stop = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        index = 0
        while not self.stop.is_set() and (self.files is None or index < self.files):
            if index == self.pause_after:
                time.sleep(self.pause)
            folder = self.prefix / "lib" / "big"
            try:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"f{index}").write_text("x")
            except OSError:  # its folder removed by the rollback meanwhile: made again next time
                pass
            index += 1
            time.sleep(0.001 if self.files is not None else 0)  # unbounded: as fast as it can
        self.done.set()

    def __enter__(self) -> LinkThread:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


def _tree(prefix: Path) -> dict[str, bytes | None]:
    return {
        p.relative_to(prefix).as_posix(): p.read_bytes() if p.is_file() else None for p in prefix.rglob("*")
    }


@pytest.fixture
def short_limit(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(journal_module, "SETTLE_LIMIT", 0.5)
    yield


def test_settle_says_when_the_environment_never_stopped_changing(env: Path, short_limit: None) -> None:
    journal = PrefixJournal(env)
    journal.begin(outside=[])
    with LinkThread(env):
        assert journal.settle() is False
    assert journal.settle() is True


def test_a_rollback_while_files_are_still_written_does_not_claim_the_environment_is_restored(
    env: Path, short_limit: None
) -> None:
    journal = PrefixJournal(env)
    journal.begin(outside=[])
    with LinkThread(env), pytest.raises(UnpackError, match=r"could not be fully restored: .*lib/big"):
        journal.settle()
        journal.rollback()


def test_settle_waits_out_a_link_thread_that_stops_writing_for_a_moment(env: Path) -> None:
    """A link thread reading a large file (to rewrite its prefix) shows nothing for a while: one
    unchanged look at the environment does not mean the thread is done (a pause of 0.1 s: two
    looks, less than the quiet time the rollback waits for)."""
    before = _tree(env)
    journal = PrefixJournal(env)
    journal.begin(outside=[])
    with LinkThread(env, files=20, pause_after=10, pause=0.1) as writer:
        time.sleep(0.005)
        journal.settle()
        assert writer.done.is_set()  # settled: the writer wrote its last file
    journal.rollback()
    assert _tree(env) == before


def test_a_rollback_of_a_settled_environment_restores_it(env: Path) -> None:
    before = _tree(env)
    journal = PrefixJournal(env)
    journal.begin(outside=[])
    (env / "bin" / "tool").unlink()
    (env / "bin" / "tool").write_text("new\n")
    (env / "bin" / "link").symlink_to("tool")
    with LinkThread(env, files=5):
        pass
    journal.settle()
    journal.rollback()  # the check of its own result finds nothing (put-back symlinks included)
    assert _tree(env) == before
