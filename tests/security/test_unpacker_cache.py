"""The self-extracting pack's library cache, as ``sudo`` (keeping the user's ``$HOME``) runs it.

A folder on the way to the cache that another user owns lets that user swap the cache, with a
library in it, between the unpacker's check of the library and its loading: the unpacker must not
use such a cache (it inflates the libraries into its own temporary folder instead).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import needs_linux64
from selfextract.test_executable import clean_env, needs_system_python, run_script
from selfextract.test_unpacker_size import packs  # noqa: F401 (the fixture)

NOBODY = 65534


@needs_linux64
@needs_system_python
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a folder another user owns")
def test_a_cache_below_another_users_folder_is_not_used(packs: tuple[Path, Path], tmp_path: Path) -> None:  # noqa: F811
    _, script = packs
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)  # the user's own home, kept by sudo
    env = clean_env(tmp_path)
    env["HOME"] = str(home)
    result = run_script("sh", script, "-o", tmp_path / "out", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert not list(home.rglob("*.so")), "the libraries were cached where another user can swap them"
    assert (tmp_path / "out" / "env" / "bin" / "hello").is_file()
    assert not list((tmp_path / "tmpdir").iterdir()), "temporary files were left behind"
