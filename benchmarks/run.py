"""Benchmarks of pixi-pack-ext against the floors of the machine and against its peers.

    python benchmarks/run.py [--quick] [--runs N] [--only S,L,T]

Builds synthetic worlds (``workloads.py``), serves each on 127.0.0.1, and runs every command in a fresh
child process, interleaving ours and the baseline in each round. Prints medians, the ratio of the
medians (ours / baseline) next to its target, and the peak RSS of each command. Scratch files go to
``benchmarks/.work/scratch`` and are removed as soon as a measurement is done.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import CommandFailed, Run, Series, interleaved, run_once  # noqa: E402
from workloads import WORK, MiB, World, build_world, changed_world, workloads  # noqa: E402

from pixi_pack_ext.testing.world import ChannelServer, _QuietHandler  # noqa: E402

BIN = Path(sys.executable).parent
PIXI_PACK = str(BIN / "pixi-pack")
PIXI_UNPACK = str(BIN / "pixi-unpack")
CONDA_PACK_VENV = WORK / "venvs" / "conda-pack"
PACKAGE_SUFFIXES = (".conda", ".tar.bz2", ".whl")
RSS_LIMIT_MIB = 250
SECTIONS = ("pack", "warm", "unpack", "conda-pack", "sfx", "rss", "delta")


class SendfileHandler(_QuietHandler):
    """Serve file bodies with ``sendfile`` so the server is never what limits a loopback download;
    HTTP/1.1, so connections are kept open between requests (the keep-alive server).

    Without ``TCP_NODELAY`` (the standard library's default) a small file's body waited for the
    client to acknowledge its headers, which a client delays by up to 40 ms on a kept connection:
    curl and pixi-pack alike spent most of a pack of small files waiting for that (T1000 from this
    server: curl 0.93 s against 0.57 s with it). Servers made to serve files (nginx, S3) set it.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def copyfile(self, source, outputfile) -> None:  # type: ignore[no-untyped-def]
        self.wfile.flush()
        self.connection.sendfile(source)


class StampingHandler(SendfileHandler):
    """``SendfileHandler`` noting when each request arrived (``time.perf_counter``, which a child
    started from this process measures on the same clock)."""

    arrivals: ClassVar[list[float]] = []

    def do_GET(self) -> None:
        StampingHandler.arrivals.append(time.perf_counter())
        super().do_GET()

    def do_HEAD(self) -> None:
        StampingHandler.arrivals.append(time.perf_counter())
        super().do_HEAD()


#: Start-up targets (seconds): --version and a kept --help of either command; a cold pack's first request.
STARTUP_LIMIT = 0.060
FIRST_REQUEST_LIMIT = 0.100


class StdlibServer:
    """``python -m http.server`` in a child process: HTTP/1.0 (a new connection for every file),
    the standard library's listen backlog of 5 and its copy loop, as a channel folder is often
    served on a private network."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> StdlibServer:
        for _ in range(20):  # a free port can be taken between the look and the bind: try another
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "http.server",
                    "-b",
                    "127.0.0.1",
                    str(self.port),
                    "-d",
                    self.directory,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while self._process.poll() is None and time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return self
                except OSError:
                    time.sleep(0.05)
            self._stop()
        raise RuntimeError("python -m http.server did not start")

    def _stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait()
            self._process = None

    def __exit__(self, *exc: object) -> None:
        self._stop()


@dataclass
class Row:
    """One line of the table."""

    workload: str
    what: str
    ours: Series | None
    baseline_name: str = ""
    baseline: Series | None = None
    limit: float | None = None
    note: str = ""
    ratio_override: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.ratio_override is not None:
            return self.ratio_override
        if self.ours is None or self.baseline is None or not self.baseline.runs:
            return None
        return self.ours.median / self.baseline.median

    @property
    def verdict(self) -> str:
        if self.limit is None or self.ratio is None:
            return "-" if not self.note.startswith("SKIP") else "skip"
        return "met" if self.ratio <= self.limit else "MISSED"


class Bench:
    """Holds the scratch space and the rows; one method per kind of measurement."""

    def __init__(self, runs: int) -> None:
        self.runs = runs
        self.rows: list[Row] = []
        self.scratch = WORK / "scratch"
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True)

    def fresh(self, name: str) -> Path:
        path = self.scratch / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def drop(self, *paths: Path) -> None:
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink()

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(format_row(row), flush=True)
        return row

    # -- pack ----------------------------------------------------------------------------------------

    def pack_cold(
        self,
        world: World,
        server: ChannelServer | StdlibServer,
        ws: Path,
        floor: bool = True,
        what: str = "cold pack, keep-alive server",
        keep: bool = True,
    ) -> tuple[Series, Path | None]:
        """Cold pack vs ``curl --parallel`` of the same URLs plus ``tar -cf`` from the same server;
        keeps one pack for unpacking (``keep``)."""
        files = world.package_files()
        curl_config = self.scratch / "curl.cfg"
        lines = []
        for path in files:
            rel = path.relative_to(world.serve)
            dest = ("pypi/" + path.name) if rel.parts[0] == "wheels" else rel.as_posix()
            lines.append(f'url = "{server.url}{rel.as_posix()}"\noutput = "{{DIR}}/{dest}"\n')
        template = "".join(lines)

        def ours() -> Run:
            out = self.fresh("pack-out")
            try:
                return run_once(
                    [PIXI_PACK, ws, "-e", "default", "-p", "linux-64", "-o", out / "environment.tar", "-q"]
                )
            finally:
                self.drop(out)

        def curl_tar() -> Run:
            out = self.fresh("curl-out")
            files_dir = out / "files"
            curl_config.write_text(template.replace("{DIR}", str(files_dir)))
            script = (
                f"curl --parallel --parallel-max 50 --create-dirs -sSf -K {curl_config} "
                f"&& tar -cf {out / 'environment.tar'} -C {files_dir} ."
            )
            try:
                return run_once(["sh", "-c", script])
            finally:
                self.drop(out)

        steps: dict[str, Callable[[], Run]] = {"ours": ours}
        if floor:
            steps["floor"] = curl_tar
        result = interleaved(self.runs, steps)
        self.add(
            Row(
                world.workload.name,
                what,
                result["ours"],
                "curl --parallel + tar -cf, same server",
                result.get("floor"),
                1.3 if floor else None,
            )
        )
        if not keep:
            return result["ours"], None
        kept = self.scratch / f"{world.workload.name}-environment.tar"
        run_once([PIXI_PACK, ws, "-e", "default", "-p", "linux-64", "-o", kept, "-q"])
        return result["ours"], kept

    def startup(self, world: World) -> None:
        """How soon a command answers or starts working: ``--version`` and a kept ``--help`` of
        both commands (target 60 ms), and the time from starting a cold pack to its first request
        (target 100 ms), against fixed limits; a bare ``python -c pass`` is shown for scale."""
        name = world.workload.name
        interpreter = interleaved(self.runs, {"python": lambda: run_once([sys.executable, "-c", "pass"])})
        self.add(Row(name, "bare interpreter start", interpreter["python"], note="for scale"))
        for command in (PIXI_PACK, PIXI_UNPACK):
            run_once([command, "--help"])  # keeps the help for the runs below
            for flag in ("--version", "--help"):
                result = interleaved(self.runs, {"ours": lambda c=command, f=flag: run_once([c, f])})
                series = result["ours"]
                self.add(
                    Row(
                        name,
                        f"{Path(command).name} {flag}",
                        series,
                        note=f"limit {STARTUP_LIMIT * 1000:.0f} ms",
                        ratio_override=series.median / STARTUP_LIMIT,
                        limit=1.0,
                    )
                )
        with ChannelServer(world.serve, handler=StampingHandler) as server:
            ws = world.workspace(self.fresh(f"{name}-ws-first"), server.url)

            def first_request() -> Run:
                out = self.fresh("first-out")
                StampingHandler.arrivals.clear()
                start = time.perf_counter()
                try:
                    done = run_once(
                        [PIXI_PACK, ws, "-e", "default", "-p", "linux-64", "-o", out / "e.tar", "-q"]
                    )
                finally:
                    self.drop(out)
                return Run(seconds=min(StampingHandler.arrivals) - start, rss_mib=done.rss_mib)

            series = interleaved(self.runs, {"first": first_request})["first"]
        self.add(
            Row(
                name,
                "first request after start",
                series,
                note=f"cold pack; limit {FIRST_REQUEST_LIMIT * 1000:.0f} ms",
                ratio_override=series.median / FIRST_REQUEST_LIMIT,
                limit=1.0,
            )
        )

    def pack_cold_stdlib(self, world: World) -> None:
        """The cold pack again, from ``python -m http.server`` (``StdlibServer``)."""
        with StdlibServer(world.serve) as server:
            ws = world.workspace(self.fresh(f"{world.workload.name}-ws-stdlib"), server.url)
            self.pack_cold(world, server, ws, what="cold pack, HTTP/1.0 stdlib server", keep=False)

    def pack_warm(self, world: World, server: ChannelServer, ws: Path) -> None:
        """Warm-cache pack: no package requests, and close to ``tar -cf`` of the cached files."""
        cache = self.fresh(f"{world.workload.name}-cache")
        run_once(
            [
                PIXI_PACK,
                ws,
                "-e",
                "default",
                "-p",
                "linux-64",
                "-o",
                self.scratch / "fill.tar",
                "-q",
                "--use-cache",
                cache,
            ]
        )
        self.drop(self.scratch / "fill.tar")
        before = _package_requests(server)

        def ours() -> Run:
            out = self.fresh("pack-out")
            try:
                return run_once(
                    [
                        PIXI_PACK,
                        ws,
                        "-e",
                        "default",
                        "-p",
                        "linux-64",
                        "-o",
                        out / "environment.tar",
                        "-q",
                        "--use-cache",
                        cache,
                    ]
                )
            finally:
                self.drop(out)

        def tar_floor() -> Run:
            out = self.fresh("tar-out")
            try:
                return run_once(["tar", "-cf", out / "environment.tar", "-C", cache, "."])
            finally:
                self.drop(out)

        result = interleaved(self.runs, {"ours": ours, "floor": tar_floor})
        requests = _package_requests(server) - before
        self.add(
            Row(
                world.workload.name,
                "warm-cache pack",
                result["ours"],
                "tar -cf of the cached files",
                result["floor"],
                1.2,
            )
        )
        self.add(
            Row(
                world.workload.name,
                "warm-cache package requests",
                None,
                note=f"{requests} over {self.runs} runs (target 0)",
                ratio_override=float(requests),
                limit=0.0,
            )
        )
        self.drop(cache)

    # -- unpack --------------------------------------------------------------------------------------

    def unpack(self, world: World, pack: Path, floor: bool = True) -> Series:
        """``pixi-unpack`` of the tar vs a bare ``rattler.install`` of the same records from the same files."""
        extracted = self.fresh(f"{world.workload.name}-extracted")
        subprocess.run(["tar", "-xf", pack, "-C", extracted], check=True)

        def ours() -> Run:
            out = self.fresh("unpack-out")
            try:
                return run_once([PIXI_UNPACK, pack, "-o", out, "-q"])
            finally:
                self.drop(out)

        def rattler_floor() -> Run:
            out = self.fresh("floor-out")
            try:
                return run_once(
                    [
                        sys.executable,
                        HERE / "install_floor.py",
                        extracted / "channel",
                        out / "env",
                        out / "cache",
                    ]
                )
            finally:
                self.drop(out)

        steps: dict[str, Callable[[], Run]] = {"ours": ours}
        if floor:
            steps["floor"] = rattler_floor
        result = interleaved(self.runs, steps)
        self.drop(extracted)
        self.add(
            Row(
                world.workload.name,
                "unpack",
                result["ours"],
                "bare rattler.install",
                result.get("floor"),
                1.2 if floor else None,
            )
        )
        return result["ours"]

    # -- delta ---------------------------------------------------------------------------------------

    def delta(self, world: World, pack: Path, full_unpack: Series) -> None:
        """One small package changed: the delta's size against the full pack's, and applying it
        (``pixi-unpack DELTA`` into an unpacked base) against the full unpack."""
        name = world.workload.name
        changed = changed_world(world)
        with ChannelServer(changed.serve, handler=SendfileHandler) as server:
            ws = changed.workspace(self.fresh(f"{name}-changed-ws"), server.url)
            delta = self.scratch / f"{name}-delta.tar"
            run_once([PIXI_PACK, ws, "-e", "default", "-p", "linux-64", "--since", pack, "-o", delta, "-q"])
        size_ratio = delta.stat().st_size / pack.stat().st_size
        self.add(
            Row(
                name,
                "delta size / full pack size",
                None,
                note=f"{delta.stat().st_size / MiB:.2f} MiB of {pack.stat().st_size / MiB:.0f} MiB",
                ratio_override=size_ratio,
                limit=0.01,
            )
        )
        out = self.scratch / "delta-out"

        def base() -> None:
            self.drop(out)
            run_once([PIXI_UNPACK, pack, "-o", out, "-q"])
            os.sync()  # the base's write-back is not the apply's

        def apply() -> Run:
            return run_once([PIXI_UNPACK, delta, "-o", out, "-q"])

        result = interleaved(self.runs, {"apply": apply}, before_each=base)
        self.drop(out, delta)
        self.add(Row(name, "apply delta (1 small package)", result["apply"], "full unpack", full_unpack, 0.1))

    def conda_pack(self, world: World, pack: Path, ours: Series) -> None:
        """conda-pack's unpack (extract + conda-unpack) of the same environment, vs our unpack: in
        conda-pack's default format (``.tar.gz``), the target row, and as an uncompressed tar."""
        name = world.workload.name
        tool = CONDA_PACK_VENV / "bin" / "conda-pack"
        if not tool.exists():
            reason = _install_conda_pack()
            if reason:
                self.add(Row(name, "unpack vs conda-pack", None, note=f"SKIP: {reason}"))
                return
        env_root = self.fresh(f"{name}-cp-env")
        run_once([PIXI_UNPACK, pack, "-o", env_root, "-q"])
        archives = {
            "tar.gz": self.scratch / f"{name}-conda-pack.tar.gz",
            "tar": self.scratch / f"{name}-conda-pack.tar",
        }
        try:
            for archive in archives.values():  # the format follows the name, as conda-pack infers it
                run_once(
                    [
                        tool,
                        "-p",
                        env_root / "env",
                        "-o",
                        archive,
                        "--n-threads",
                        "-1",
                        "--ignore-missing-files",
                        "-q",
                    ]
                )
        except CommandFailed as exc:
            self.add(
                Row(name, "unpack vs conda-pack", None, note=f"SKIP: conda-pack failed: {str(exc)[-200:]}")
            )
            return
        finally:
            self.drop(env_root)
        python = CONDA_PACK_VENV / "bin" / "python"

        def conda_unpack(archive: Path) -> Callable[[], Run]:
            def once() -> Run:
                out = self.fresh("cp-out")
                script = f"tar -xf {archive} -C {out} && {python} {out}/bin/conda-unpack"
                try:
                    return run_once(["sh", "-c", script])
                finally:
                    self.drop(out)

            return once

        result = interleaved(self.runs, {kind: conda_unpack(path) for kind, path in archives.items()})
        for archive in archives.values():
            self.drop(archive)
        self.add(
            Row(
                name,
                "unpack vs conda-pack",
                ours,
                "tar -xf + conda-unpack (conda-pack's default .tar.gz)",
                result["tar.gz"],
                1.0,
            )
        )
        self.add(
            Row(
                name,
                "unpack vs conda-pack, plain tar",
                ours,
                "tar -xf + conda-unpack (uncompressed tar)",
                result["tar"],
            )
        )

    def self_extracting(self, world: World, ws: Path, pack: Path, ours_unpack: Series) -> Series | None:
        """The self-extracting executable's unpack vs pixi-unpack of the tar."""
        name = world.workload.name
        reason = _executable_format_missing()
        if reason:
            self.add(Row(name, "self-extracting unpack", None, note=f"SKIP: {reason}"))
            return None
        exe = self.scratch / f"{name}-environment.sh"
        run_once([PIXI_PACK, ws, "-e", "default", "-p", "linux-64", "--create-executable", "-o", exe, "-q"])

        def sfx() -> Run:
            out = self.fresh("sfx-out")
            try:
                # The interpreter pixi-unpack runs on, found without a version manager's shim on
                # PATH (pyenv's costs ~60 ms per start), as /usr/bin/python3 is on most targets.
                python = os.path.realpath(sys.executable)  # the header splits the variable at spaces
                env = {"PIXI_UNPACK_PYTHON": python} if " " not in python else None
                return run_once(["sh", exe, "-o", out, "-q"], cwd=out, env=env)
            finally:
                self.drop(out)

        def tar_unpack() -> Run:
            out = self.fresh("unpack-out")
            try:
                return run_once([PIXI_UNPACK, pack, "-o", out, "-q"])
            finally:
                self.drop(out)

        result = interleaved(self.runs, {"sfx": sfx, "tar": tar_unpack})
        self.drop(exe)
        self.add(
            Row(name, "self-extracting unpack", result["sfx"], "pixi-unpack of the tar", result["tar"], 1.1)
        )
        return result["sfx"]

    # -- progress --------------------------------------------------------------------------------------

    def progress_cost(self, world: World, ws: Path, pack: Path) -> None:
        """The rich progress on a (pseudo) terminal vs the same command with stderr discarded."""
        name = world.workload.name
        if shutil.which("script") is None:
            self.add(
                Row(name, "progress display", None, note="SKIP: no 'script' command for a pseudo terminal")
            )
            return
        for label, command in (
            ("pack", f"{PIXI_PACK} {ws} -e default -p linux-64 -o {{OUT}}/environment.tar"),
            ("unpack", f"{PIXI_UNPACK} {pack} -o {{OUT}}"),
        ):

            def shown(command: str = command) -> Run:
                out = self.fresh("progress-out")
                try:
                    return run_once(["script", "-qec", command.replace("{OUT}", str(out)), "/dev/null"])
                finally:
                    self.drop(out)

            def hidden(command: str = command) -> Run:
                out = self.fresh("progress-out")
                try:
                    return run_once(
                        ["script", "-qec", command.replace("{OUT}", str(out)) + " 2>/dev/null", "/dev/null"]
                    )
                finally:
                    self.drop(out)

            result = interleaved(self.runs, {"shown": shown, "hidden": hidden})
            self.add(
                Row(
                    name,
                    f"{label} with progress shown",
                    result["shown"],
                    "same, stderr not a terminal",
                    result["hidden"],
                    1.05,
                )
            )


def _package_requests(server: ChannelServer) -> int:
    with server.log.lock:
        return sum(1 for p in server.log.paths if p.endswith(PACKAGE_SUFFIXES))


def _install_conda_pack() -> str | None:
    """Install conda-pack (PyPI) into its own venv; the reason it could not be, or None."""
    try:
        subprocess.run([sys.executable, "-m", "venv", CONDA_PACK_VENV], check=True, capture_output=True)
        subprocess.run(
            [CONDA_PACK_VENV / "bin" / "pip", "install", "-q", "conda-pack"], check=True, capture_output=True
        )
    except subprocess.CalledProcessError as exc:
        return f"could not install conda-pack: {exc.stderr.decode(errors='replace')[-200:]}"
    return None


def _executable_format_missing() -> str | None:
    from pixi_pack_ext.errors import PixiPackError
    from pixi_pack_ext.plugins import get_plugin_manager

    try:
        get_plugin_manager().format_named("executable")
    except PixiPackError:
        return "no 'executable' pack format (--create-executable) is available yet"
    return None


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------

HEADER = f"{'workload':<8} {'measurement':<30} {'ours s':>8} {'base s':>8} {'ratio':>7} {'target':>7} {'verdict':>7} {'RSS MiB':>8}  baseline / note"


def format_row(row: Row) -> str:
    ours = f"{row.ours.median:8.2f}" if row.ours and row.ours.runs else f"{'-':>8}"
    base = f"{row.baseline.median:8.2f}" if row.baseline and row.baseline.runs else f"{'-':>8}"
    ratio = f"{row.ratio:7.2f}" if row.ratio is not None else f"{'-':>7}"
    limit = f"<={row.limit:5.2f}" if row.limit is not None else f"{'-':>7}"
    rss = f"{row.ours.peak_rss:8.0f}" if row.ours and row.ours.runs else f"{'-':>8}"
    tail = " / ".join(x for x in (row.baseline_name, row.note) if x)
    return f"{row.workload:<8} {row.what:<30} {ours} {base} {ratio} {limit} {row.verdict:>7} {rss}  {tail}"


#: The measured packages: the tool and the plugin distributions beside it.
MEASURED_PACKAGES = ("pixi_pack_ext", "pixi_pack_oci", "pixi_pack_unix_socket")


def compile_bytecode() -> None:
    """Write the measured packages' bytecode first, as an installer does. With an editable install
    and ``PYTHONDONTWRITEBYTECODE=1`` every run would compile each changed module again: ~50 ms
    of start-up that a user's install never pays (and the floor, importing only installed
    packages, never pays either)."""
    import compileall
    import importlib.util

    for name in MEASURED_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None:  # a plugin that is not installed
            continue
        for folder in spec.submodule_search_locations or []:
            compileall.compile_dir(folder, quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small workloads (S 50 MiB, L 200 MiB)")
    parser.add_argument(
        "--runs", type=int, default=5, help="runs per measurement (medians are reported; default 5)"
    )
    parser.add_argument("--only", default="S,L,T", help="comma-separated subset of S, L, T")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {', '.join(SECTIONS)} (S and L only; T runs all of its own)",
    )
    parser.add_argument("--keep", action="store_true", help="keep benchmarks/.work/scratch afterwards")
    args = parser.parse_args()
    only = set(args.only.split(","))
    sections = set(args.sections.split(","))

    needed = 3 * (200 if args.quick else 2200) * MiB
    free = shutil.disk_usage(WORK.parent).free
    if free < needed * 2:
        sys.exit(
            f"not enough free disk space under {WORK}: {free / MiB:.0f} MiB free, want {2 * needed / MiB:.0f}"
        )

    compile_bytecode()
    loads = workloads(args.quick)
    bench = Bench(args.runs)
    started = time.perf_counter()
    print(
        f"pixi-pack-ext benchmarks ({'quick' if args.quick else 'full'} mode, {args.runs} runs each, "
        f"{os.cpu_count()} CPUs, host {socket.gethostname()})",
        flush=True,
    )
    worlds = {name: build_world(w) for name, w in loads.items() if name[0] in only}
    print(HEADER, flush=True)
    try:
        for name in ("S", "L"):
            if name not in worlds:
                continue
            world = worlds[name]
            with ChannelServer(world.serve, handler=SendfileHandler) as server:
                ws = world.workspace(bench.fresh(f"{name}-ws"), server.url)
                ours_pack, pack = bench.pack_cold(world, server, ws, floor="pack" in sections)
                assert pack is not None
                if "warm" in sections:
                    bench.pack_warm(world, server, ws)
                ours_unpack = bench.unpack(world, pack, floor="unpack" in sections)
                if "conda-pack" in sections:
                    bench.conda_pack(world, pack, ours_unpack)
                sfx = bench.self_extracting(world, ws, pack, ours_unpack) if "sfx" in sections else None
                if name == "L" and "delta" in sections:
                    bench.delta(world, pack, ours_unpack)
                if name == "L" and "rss" in sections:
                    for label, series in (
                        ("pack", ours_pack),
                        ("unpack", ours_unpack),
                        ("self-extracting unpack", sfx),
                    ):
                        bench.add(
                            Row(
                                name,
                                f"peak RSS of {label}",
                                series,
                                note=f"limit {RSS_LIMIT_MIB} MiB" if series else f"SKIP: no {label} measured",
                                ratio_override=series.peak_rss / RSS_LIMIT_MIB if series else None,
                                limit=1.0 if series else None,
                            )
                        )
                bench.drop(pack)
            if name == "S" and "pack" in sections:
                bench.pack_cold_stdlib(world)
        if "T200" in worlds:
            scale: dict[str, dict[str, Series]] = {}
            bench.startup(worlds["T200"])
            for name in ("T200", "T1000"):
                world = worlds[name]
                with ChannelServer(world.serve, handler=SendfileHandler) as server:
                    ws = world.workspace(bench.fresh(f"{name}-ws"), server.url)
                    pack_series, pack = bench.pack_cold(world, server, ws)
                    assert pack is not None
                    unpack_series = bench.unpack(world, pack)
                    scale[name] = {"pack": pack_series, "unpack": unpack_series}
                    if name == "T1000":
                        bench.progress_cost(world, ws, pack)
                    bench.drop(pack)
                bench.pack_cold_stdlib(world)
            for label in ("pack", "unpack"):
                bench.add(
                    Row(
                        "T1000",
                        f"{label} scale T1000/T200",
                        scale["T1000"][label],
                        f"T200 {label}",
                        scale["T200"][label],
                        6.0,
                    )
                )
    finally:
        if not args.keep:
            shutil.rmtree(bench.scratch, ignore_errors=True)

    print()
    print(f"summary ({time.perf_counter() - started:.0f} s; ratio = median ours / median baseline)")
    print(HEADER)
    for row in bench.rows:
        print(format_row(row))
    missed = [r for r in bench.rows if r.verdict == "MISSED"]
    print(
        f"\n{len(missed)} target(s) missed"
        + (": " + "; ".join(f"{r.workload} {r.what}" for r in missed) if missed else "")
    )


if __name__ == "__main__":
    main()
