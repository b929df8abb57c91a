"""Run the plugins' unpack steps: every ``prepare`` while rattler installs, every ``run`` after it.

rattler's install keeps about one and a half cores busy linking files; a step's own work (the
wheels' decompressing and hashing) fills the rest when it overlaps, instead of following it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import rattler

from ..hookspecs import UnpackContext, UnpackStep


class StepRunner:
    """The steps of one unpack, each with its own context and scratch folder."""

    def __init__(
        self,
        steps: list[UnpackStep],
        *,
        pack_dir: Path,
        prefix: Path,
        target_prefix: Path | None = None,
        platform: str,
        records: list[rattler.RepoDataRecord],
        scratch_root: Path,
        compile_bytecode: bool = False,
    ) -> None:
        self.steps = [
            (
                step,
                UnpackContext(
                    pack_dir=pack_dir,
                    prefix=prefix,
                    target_prefix=target_prefix,
                    platform=platform,
                    records=tuple(records),
                    scratch=scratch_root / str(index),  # step names are free text: not a path
                    compile_bytecode=compile_bytecode,
                ),
            )
            for index, step in enumerate(steps)
        ]

    @contextmanager
    def preparing(self) -> Iterator[None]:
        """Run every ``prepare`` in a thread while the ``with`` body installs; its error is raised
        at the end of the body (the body's own error wins: the unpack fails either way)."""
        pending = [(step.prepare, context) for step, context in self.steps if step.prepare is not None]
        if not pending:
            yield
            return
        failure: list[BaseException] = []

        def prepare_all() -> None:
            try:
                for prepare, context in pending:
                    _call(prepare, context)
            except BaseException as exc:  # handed to the main thread below
                failure.append(exc)

        worker = threading.Thread(target=prepare_all, name="pixi-unpack-prepare", daemon=True)
        worker.start()
        try:
            yield
        finally:
            worker.join()  # before anyone removes the scratch folders or the prefix
        if failure:
            raise failure[0]

    def run_all(self) -> None:
        """Every step's ``run``, in order, once the conda packages are installed."""
        for step, context in self.steps:
            _call(step.run, context)


def _call(function: Callable[[UnpackContext], Awaitable[None] | None], context: UnpackContext) -> None:
    if context.scratch is not None:
        context.scratch.mkdir(parents=True, exist_ok=True)
    result = function(context)
    if asyncio.iscoroutine(result):
        asyncio.run(result)
