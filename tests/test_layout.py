"""The package's layering, checked on the source: folders show the pipeline, and imports follow it.

cli -> pack | unpack | selfextract -> core; pack and unpack never import each other; the core never
imports a stage; the plugins under plugins/ use the public API only; no import cycles. Every import
counts, also those inside functions and under TYPE_CHECKING: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pixi_pack_ext

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = SRC / "pixi_pack_ext"
STAGES = ("pack", "unpack", "selfextract")
#: Modules at the top that are facades over the stages, not part of the core.
FACADES = {"pixi_pack_ext", "pixi_pack_ext.format_toolkit"}
#: The bundled unpacker's ``__main__``: an entry point like the console scripts, so it may call cli.
ENTRY_POINTS = {"pixi_pack_ext.selfextract.unpacker_main"}
PUBLIC = {
    "pixi_pack_ext",
    "pixi_pack_ext.hookspecs",
    "pixi_pack_ext.errors",
    "pixi_pack_ext.config",
    "pixi_pack_ext.plan",
    "pixi_pack_ext.redact",
    "pixi_pack_ext.format_toolkit",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set[str]:
    """Absolute names of the pixi_pack_ext modules (or packages) ``path`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}
    return {imp for imp in found if imp.split(".")[0] == "pixi_pack_ext"}


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        targets = set()
        for imp in _imports(path, name):
            while imp and imp not in paths:  # "from .pack import fetch" names a module, or a name in it
                imp = imp.rpartition(".")[0]
            if imp and imp != name:
                targets.add(imp)
        graph[name] = targets
    return graph


def _stage(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 2 or module in FACADES:
        return "facade" if module in FACADES else "core"
    return parts[1]


GRAPH = _graph()


def test_the_pipeline_has_its_folders() -> None:
    for folder in (*STAGES, "builtin", "cli", "testing"):
        assert (PACKAGE / folder / "__init__.py").is_file(), folder
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert {"hookspecs", "plugins", "config", "errors", "metadata", "plan", "redact"} <= set(top)
    assert not {"fetch", "unpack", "pack", "selfextract", "activation", "wheel_install"} & set(top)


def test_the_core_imports_no_stage() -> None:
    wrong = {
        (module, target)
        for module, targets in GRAPH.items()
        if _stage(module) == "core"
        for target in targets
        if _stage(target) != "core" and target != "pixi_pack_ext"  # the root only for __version__
    }
    assert not wrong


def test_pack_and_unpack_never_import_each_other() -> None:
    wrong = {
        (module, target)
        for module, targets in GRAPH.items()
        for target in targets
        if {_stage(module), _stage(target)} == {"pack", "unpack"}
    }
    assert not wrong


def test_stages_never_import_the_cli() -> None:
    wrong = {
        (module, target)
        for module, targets in GRAPH.items()
        if _stage(module) != "cli" and module not in ENTRY_POINTS
        for target in targets
        if _stage(target) == "cli"
    }
    assert not wrong


def test_no_import_cycles() -> None:
    done: set[str] = set()
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        if module in path:
            cycles.append([*path[path.index(module) :], module])
            return
        if module in done:
            return
        path.append(module)
        for target in sorted(GRAPH.get(module, ())):
            visit(target)
        path.pop()
        done.add(module)

    for module in sorted(GRAPH):
        visit(module)
    assert not cycles


def test_plugins_use_the_public_api_only() -> None:
    wrong = set()
    for path in (REPO / "plugins").glob("*/src/**/*.py"):
        for imp in _imports(path, "plugin"):
            module = imp
            while module not in GRAPH and module:
                module = module.rpartition(".")[0]
            if module not in PUBLIC:
                wrong.add((path.relative_to(REPO).as_posix(), imp))
    assert not wrong


def test_the_public_api_is_what_the_docs_say() -> None:
    documented = (REPO / "docs" / "plugins.md").read_text()
    for name in pixi_pack_ext.__all__:
        assert hasattr(pixi_pack_ext, name), name
        if not name.startswith("_") and name != "PACK_FORMAT_VERSION":
            assert f"`{name}`" in documented, f"{name} is exported but docs/plugins.md does not name it"
    assert set(dir(pixi_pack_ext)) >= set(pixi_pack_ext.__all__)
