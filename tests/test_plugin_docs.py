"""The hook reference is complete: every hook and record is in docs/plugins.md, with one doc style."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

from pixi_pack_ext import hookspecs

DOCS = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
SOURCE = Path(hookspecs.__file__).read_text()


def _hooks() -> list[str]:
    return [name for name, value in vars(hookspecs).items() if hasattr(value, "pixi_pack_spec")]


def _records() -> list[type]:
    return [
        value
        for value in vars(hookspecs).values()
        if inspect.isclass(value) and value.__module__ == hookspecs.__name__
    ]


def test_every_hook_is_documented_with_an_example() -> None:
    hooks = _hooks()
    assert len(hooks) >= 4
    for name in hooks:
        assert f"`{name}()`" in DOCS, f"docs/plugins.md lacks the hook {name}"
        assert "Example::" in (getattr(hookspecs, name).__doc__ or ""), f"{name} has no example"


def test_every_record_and_protocol_is_documented() -> None:
    for record in _records():
        assert f"`{record.__name__}`" in DOCS, f"docs/plugins.md lacks {record.__name__}"
        assert record.__doc__, record.__name__


def test_every_record_field_has_a_field_comment() -> None:
    """One style: a ``#:`` line right above each field, as Sphinx reads it."""
    lines = SOURCE.splitlines()
    classes = {node.name: node for node in ast.walk(ast.parse(SOURCE)) if isinstance(node, ast.ClassDef)}
    for record in _records():
        if not dataclasses.is_dataclass(record):
            continue
        for node in classes[record.__name__].body:
            if isinstance(node, ast.AnnAssign):
                above = lines[node.lineno - 2].strip()
                assert above.startswith("#:"), (
                    f"{record.__name__}.{ast.unparse(node.target)} has no #: comment"
                )
