"""The self-extracting pack the tests share: built once per session (it is expensive)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run


@pytest.fixture(scope="session")
def executable(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The prod environment of the demo as environment.sh with the bundled pixi-unpack."""
    out = tmp_path_factory.mktemp("exe") / "environment.sh"
    run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "--create-executable", "-o", out, timeout=600)
    return out
