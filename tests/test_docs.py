"""The docs say what the tools do: every ``bash`` block of docs/*.md runs against the demo world.

Each page runs in its own folder holding a copy of the locked demo workspace (``pixi.toml`` and a
``pixi.lock`` that points at the test channel server), with our console scripts first on PATH and
HOME in a temporary folder. A page that makes its own workspace (``examples/run_demo.py
--workspace``) starts instead in a folder that holds this repository's ``examples``, as a reader
starts at the root of a clone. The blocks of a page run in page order in one ``bash -euo pipefail``,
as a reader types them into one shell: ``cd``, ``source`` and variables carry over from block to
block, and a failing command fails the test. An HTML comment on the
line right before a fence steers it:

- ``<!-- not tested: REASON -->``: the block is not run (it needs a network, a second machine, ...).
- ``<!-- needs: TOOL -->``: the block runs only where TOOL is on PATH.
- ``<!-- file: NAME -->``: the block's text is written to NAME, where the shell is at that point.
- ``<!-- setup: NAME -->``: ``SETUPS[NAME]`` prepares the folder before the block runs (files a
  reader would bring along, like a package to inject).
- ``<!-- output -->`` (on a ``text`` block): the previous bash block printed exactly this.

Flags the docs pass to ``pixi-pack``/``pixi-unpack`` must exist, and every ``error:`` line of
troubleshooting.md must be one the code can raise.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import BIN, REPO, copy_workspace, host_platform

DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(
    r"(?:^<!--\s*(?P<directive>[^>]*?)\s*-->\n)?^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```\s*$",
    re.M | re.S,
)


@dataclass
class Block:
    """One fenced block of a page and the directive in front of it."""

    page: str
    line: int
    lang: str
    body: str
    directive: str = ""

    @property
    def key(self) -> str:
        return self.directive.split(":", 1)[0].strip() if self.directive else ""

    @property
    def value(self) -> str:
        return self.directive.split(":", 1)[1].strip() if ":" in self.directive else ""

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    return [
        Block(
            page=page.name,
            line=text.count("\n", 0, m.start("body")),
            lang=m["lang"],
            body=m["body"],
            directive=m["directive"] or "",
        )
        for m in FENCE.finditer(text)
    ]


# --------------------------------------------------------------------------------------------------
# Set-ups: what a reader has at hand that the demo workspace lacks
# --------------------------------------------------------------------------------------------------


def _conda_package(folder: Path) -> None:
    """``my-app-1.0-h0_0.conda``: a noarch package that depends on the environment's hello-bin."""
    from rattler_build import assemble_package

    files = folder / ".my-app-files"
    (files / "bin").mkdir(parents=True, exist_ok=True)
    script = files / "bin" / "my-app"
    script.write_text('#!/bin/sh\necho "my-app 1.0 uses: $(hello)"\n')
    script.chmod(0o755)
    assemble_package(
        name="my-app",
        version="1.0",
        target_platform="noarch",
        build_string="h0_0",
        output_dir=folder,
        files_dir=files,
        depends=["hello-bin"],
        noarch="generic",
    )
    shutil.rmtree(files)


SETUPS: dict[str, Callable[[Path], None]] = {
    "conda-package": _conda_package,
}


# --------------------------------------------------------------------------------------------------
# Running a page
# --------------------------------------------------------------------------------------------------


def runnable(page: Path) -> bool:
    return any(b.lang == "bash" and b.key != "not tested" for b in blocks(page))


def makes_its_workspace(page: Path) -> bool:
    """A page that starts by making the demo workspace (``examples/run_demo.py --workspace``) is run
    from the root of a repository, as its reader does; the others run inside a workspace."""
    return any("run_demo.py --workspace" in b.body for b in blocks(page) if b.lang == "bash")


@pytest.fixture
def page_folder(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if makes_its_workspace(request.node.callspec.params["page"]):
        folder = tmp_path / "work"
        folder.mkdir()
        (folder / "examples").symlink_to(REPO / "examples", target_is_directory=True)
        return folder
    return copy_workspace(request.getfixturevalue("workspace"), tmp_path / "work")


#: Marks the end of a block's output in the page's one shell: ``<marker> <block number> <status>``.
END = "__docs_block_end__"


def page_script(page: Path, folder: Path) -> tuple[str, list[Block]]:
    """One bash script for the whole page, as a reader types it into one shell, and the blocks it runs.

    Each bash block's standard output goes to a file of its own (for ``<!-- output -->``), the
    shell carries on from block to block (``cd``, ``source``, variables), and ``file`` blocks are
    written where the shell is at that point, as a reader saves them.
    """
    lines = ['__docs_out="$1"', "set -euo pipefail"]
    ran: list[Block] = []
    for block in blocks(page):
        if block.key == "not tested":
            assert block.value, f"{block}: say why the block is not tested"
            continue
        if block.key == "file":
            delimiter = "__DOCS_FILE_END__"
            assert delimiter not in block.body
            lines += [
                f'mkdir -p "$(dirname -- {shlex.quote(block.value)})"',
                f"cat > {shlex.quote(block.value)} <<'{delimiter}'\n{block.body}{delimiter}",
            ]
            continue
        if block.lang != "bash":
            continue
        if block.key == "needs" and shutil.which(block.value) is None:
            continue
        if block.key == "setup":
            SETUPS[block.value](folder)
        index = len(ran)
        ran.append(block)
        lines += [
            f'echo {index} > "$__docs_out/current"',
            f'{{\n{block.body}\n}} > "$__docs_out/{index}.out"',
        ]
    lines.append('echo done > "$__docs_out/current"')
    return "\n".join(lines) + "\n", ran


def run_page(page: Path, folder: Path) -> int:
    """Run the page's blocks, in order, in one shell in ``folder``; returns how many bash blocks ran."""
    home = folder.parent / "home"
    home.mkdir(exist_ok=True)
    out = folder.parent / "outputs"
    out.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),
        # the user's cache (not HOME's) keeps what --create-executable downloads once
        "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"),
        "NO_COLOR": "1",
        "COLUMNS": "120",
    }
    env.pop("RATTLER_AUTH_FILE", None)
    script, ran = page_script(page, folder)
    result = subprocess.run(
        ["bash", "-c", script, "page", str(out)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    reached = (out / "current").read_text().strip() if (out / "current").exists() else "0"
    if result.returncode != 0 or reached != "done":
        block = ran[int(reached)] if reached.isdigit() else None
        output = (out / f"{reached}.out").read_text() if (out / f"{reached}.out").exists() else ""
        raise AssertionError(
            f"{block or page.name} exited {result.returncode}:\n{block.body if block else ''}\n"
            f"stdout:\n{output[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
        )
    _check_outputs(page, ran, out)
    return len(ran)


def _check_outputs(page: Path, ran: list[Block], out: Path) -> None:
    """Each ``<!-- output -->`` block is exactly what the bash block right before it printed."""
    previous: Block | None = None
    for block in blocks(page):
        if block.key == "output":
            assert previous is not None, f"{block}: an output block must follow a bash block that ran"
            printed = (out / f"{ran.index(previous)}.out").read_text()
            assert printed == block.body, f"{block}: {previous} printed\n{printed}"
        elif block.lang == "bash":
            previous = block if block in ran else None


@pytest.mark.skipif(host_platform() != "linux-64", reason="the demo world's programs are built for linux-64")
@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p)], ids=lambda p: p.name)
def test_page_commands_run(page: Path, page_folder: Path) -> None:
    assert run_page(page, page_folder) > 0


def test_quickstart_is_tested() -> None:
    assert runnable(DOCS / "quickstart.md")


def test_every_directive_is_known() -> None:
    known = {"not tested", "needs", "file", "setup", "output"}
    for page in PAGES:
        for block in blocks(page):
            if block.directive:
                assert block.key in known, f"{block}: unknown directive '{block.directive}'"
            if block.key == "setup":
                assert block.value in SETUPS, f"{block}: no set-up named '{block.value}'"


# --------------------------------------------------------------------------------------------------
# Flags, links and error messages
# --------------------------------------------------------------------------------------------------


def _help(command: str) -> str:
    program, *sub = command.split()
    result = subprocess.run(
        [str(BIN / program), *sub, "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "250"},
    )
    return result.stdout


def documented_flags() -> dict[str, set[str]]:
    """Every ``--flag``/``-f`` that a docs code block passes to pixi-pack or pixi-unpack."""
    found: dict[str, set[str]] = {"pixi-pack": set(), "pixi-unpack": set(), "pixi-pack completion": set()}
    for page in [*PAGES, REPO / "README.md"]:
        for block in blocks(page):
            for line in block.body.splitlines():
                for match in re.finditer(r"(?:^|[|;&(]\s*|\s)(pixi[- ](?:un)?pack)(?![\w-])([^|;&#]*)", line):
                    command = match[1].replace(" ", "-")
                    if match[2].split()[:1] == ["completion"]:
                        command = "pixi-pack completion"
                    if command == "pixi-pack" and match[2].split()[:1] in (["verify"], ["sbom"]):
                        command = f"pixi-pack {match[2].split()[0]}"
                    found.setdefault(command, set())
                    found[command] |= set(re.findall(r"(?:^|\s)(--?[a-zA-Z][\w-]*)", match[2]))
    return found


def test_documented_flags_exist() -> None:
    for command, flags in documented_flags().items():
        help_text = _help(command)
        missing = sorted(f for f in flags if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", help_text))
        assert not missing, f"the docs pass {missing} to {command}, which its --help does not list"


def test_links_between_pages_resolve() -> None:
    for page in [*PAGES, REPO / "README.md"]:
        for target in re.findall(r"\]\((?!https?://|#)([^)#\s]+)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def _error_templates() -> list[re.Pattern[str]]:
    """Every message a ``SomeError(...)`` call in src/ can carry, as a regex."""
    patterns = []
    for path in (REPO / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id.endswith("Error")
                and node.args
            ):
                continue
            message = node.args[0]
            if isinstance(message, ast.Constant) and isinstance(message.value, str):
                patterns.append(re.compile(re.escape(message.value)))
            elif isinstance(message, ast.JoinedStr):
                parts = [re.escape(v.value) if isinstance(v, ast.Constant) else ".+?" for v in message.values]
                patterns.append(re.compile("".join(parts)))
    return patterns


def test_troubleshooting_errors_are_real_messages() -> None:
    templates = _error_templates()
    lines = [
        line.removeprefix("error: ")
        for block in blocks(DOCS / "troubleshooting.md")
        if block.lang == "text"
        for line in block.body.splitlines()
        if line.startswith("error: ")
    ]
    assert len(lines) >= 10
    unknown = [line for line in lines if not any(t.fullmatch(line) for t in templates)]
    assert not unknown, f"troubleshooting.md quotes errors the code does not raise: {unknown}"
