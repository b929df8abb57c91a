"""pixi-pack against servers that send more than the lock allows: every one is stopped at the
lock's size (or refused before the first byte) with one line naming the URL and the sizes, and
leaves no pack and nothing half-written; a redirect loop is one line too. Both downloaders are
tried: rattler's goes first, httpx takes over (``PIXI_PACK_NATIVE_HTTP=0`` would be the same)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pack_checks import package_paths

from pixi_pack_ext.testing.faulty_server import Endless, FaultyServer, GzipBomb, RedirectLoop

from .conftest import error_line, leftovers, pack

#: Far more than any package of the demo channel: what a hostile server would send.
HUGE = 256 << 20


def _hello_bin(channel_dir: Path) -> str:
    return next(p for p in package_paths(channel_dir) if p.startswith("/linux-64/hello-bin-"))


def _sent(faulty: FaultyServer, path: str) -> list[str]:
    return [r.outcome for r in faulty.fault_log.requests if r.path == path]


@pytest.mark.parametrize(
    "fault",
    [Endless(total=HUGE), Endless(total=HUGE, declared=HUGE), GzipBomb(expanded=HUGE)],
    ids=["no-length", "huge-length", "gzip-bomb"],
)
def test_a_body_beyond_the_locks_size_is_refused(
    fault: object, faulty: FaultyServer, moved: Callable[..., Path], channel_dir: Path, tmp_path: Path
) -> None:
    path = _hello_bin(channel_dir)
    size = (channel_dir / path.lstrip("/")).stat().st_size
    faulty.add_faults(path, fault, always=True)  # type: ignore[arg-type]
    out = tmp_path / "out"
    out.mkdir()
    result = pack(moved(faulty.url), out / "env.tar", check=False)
    line = error_line(result)
    name = path.rsplit("/", 1)[1]
    if isinstance(fault, GzipBomb):
        # httpx never decodes (its raw bytes are the small gzip body): the hash says no
        assert name in line and ("checksum mismatch" in line or f"{size} bytes the lock records" in line), (
            line
        )
    else:
        assert name in line and f"{size} bytes the lock records" in line, line
    assert list(out.iterdir()) == [] and leftovers(tmp_path) == []


def test_a_redirect_loop_is_one_line(
    faulty: FaultyServer, moved: Callable[..., Path], channel_dir: Path, tmp_path: Path
) -> None:
    path = _hello_bin(channel_dir)
    faulty.add_faults(path, RedirectLoop(), always=True)
    out = tmp_path / "out"
    out.mkdir()
    line = error_line(pack(moved(faulty.url), out / "env.tar", check=False))
    assert "redirects in a loop" in line and path.rsplit("/", 1)[1] in line, line
    assert list(out.iterdir()) == []
