"""The self-extracting pack's library cache, as root runs it, with folders another user made.

A cache folder (or a folder on the way to it) that another user owns lets that user swap a
library between the unpacker's check of its sha256 and its loading (``sudo`` keeping the user's
``$HOME``, a shared ``PIXI_UNPACK_CACHE_DIR``, a planted folder or link): the unpacker must not use
such a cache. It inflates the libraries into its own temporary folder instead, and installs.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from conftest import needs_linux64
from selfextract.helpers import _bundle_of, clean_env, needs_system_python, run_script
from selfextract.test_unpacker_size import packs  # noqa: F401 (the fixture)

NOBODY = 65534


def _other_users_folder(path: Path, mode: int = 0o755) -> Path:
    path.mkdir(parents=True)
    os.chown(path, NOBODY, NOBODY)
    path.chmod(mode)
    return path


@needs_linux64
@needs_system_python
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make folders another user owns")
@pytest.mark.parametrize("planted", ["home-of-another-user", "shared-cache", "link-to-shared", "key-folder"])
def test_a_cache_another_user_can_change_is_not_used(
    packs: tuple[Path, Path],  # noqa: F811
    tmp_path: Path,
    planted: str,
) -> None:
    _, script = packs
    env = clean_env(tmp_path)
    watched = tmp_path / "planted"
    if planted == "home-of-another-user":  # sudo keeping the user's HOME
        env["HOME"] = str(_other_users_folder(watched))
    elif planted == "shared-cache":
        env["PIXI_UNPACK_CACHE_DIR"] = str(_other_users_folder(watched, 0o777))
    elif planted == "link-to-shared":
        _other_users_folder(watched, 0o700)
        (tmp_path / "link").symlink_to(watched)
        env["PIXI_UNPACK_CACHE_DIR"] = str(tmp_path / "link")
    else:  # the folder named by the libraries' sha256s, made in advance by another user
        libraries = json.loads(_bundle_of(script).read("bundle.json"))["libraries"]
        key = hashlib.sha256(json.dumps(libraries, sort_keys=True).encode()).hexdigest()[:32]
        (tmp_path / "cache").mkdir(mode=0o700)
        _other_users_folder(tmp_path / "cache" / key, 0o700)
        watched = tmp_path / "cache"
        env["PIXI_UNPACK_CACHE_DIR"] = str(watched)
    result = run_script("sh", script, "-o", tmp_path / "out", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert not list(watched.rglob("*.so")), "the libraries were cached where another user can swap them"
    assert (tmp_path / "out" / "env" / "bin" / "hello").is_file()
    assert not list((tmp_path / "tmpdir").iterdir()), "temporary files were left behind"
