"""What every benchmark shares: the machine it ran on, a temporary tracking store, a
snapshot of the project to run sweeps in, and a timer.

Each script puts the repository root on sys.path itself (`import _machine` does it), so
`.venv/bin/python bench/<name>.py` works from any folder.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# bench/ is on sys.path only so that scripts can `import _machine`; left there, bench/packaging.py
# would shadow the `packaging` distribution that mlflow imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
# A benchmark's own child process imports the project snapshot its parent runs the sweeps in.
CODE = Path(os.environ.get("BENCH_PROJECT") or ROOT)
if str(CODE) not in sys.path:
    sys.path.insert(0, str(CODE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter

REAL_DATA = ROOT.parent / "shared" / "data" / "mmlm2024"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return "not installed"


def _load() -> str:
    try:
        one, five, fifteen = os.getloadavg()
        return f"{one:.2f} {five:.2f} {fifteen:.2f}"
    except OSError:
        return "unknown"


def describe() -> str:
    """One block of text: date, cores, CPU, memory, load, and the versions that matter."""
    lines = [
        f"date:       {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"nproc:      {os.cpu_count()}",
        f"cpu:        {_cpu_model()}",
        f"memory:     {_memory()}",
        f"load avg:   {_load()} (1, 5, 15 min, at start)",
        f"python:     {platform.python_version()} ({sys.executable})",
        f"tensorflow: {_version('tensorflow')}",
        f"keras:      {_version('keras')}",
        f"mlflow:     {_version('mlflow')}",
        f"command:    {' '.join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}",
    ]
    return "\n".join(lines)


def header(title: str) -> None:
    print(f"== {title} ==")
    print(describe(), flush=True)
    print(flush=True)


@contextmanager
def temp_store(prefix: str = "bench-"):
    """Track this process and every child into a temporary folder with its own SQLite store
    (tools.sandbox.temp_store); artifacts inside it."""
    from tools import sandbox

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp, sandbox.temp_store(Path(tmp)):
        yield Path(tmp)


def snapshot(dest: Path) -> tuple[Path, str]:
    """Copy the project as it is now, with its history, to `dest` (tools.sandbox.snapshot): the sweeps run
    there, so edits made to the working tree meanwhile (which change `git.state` and so the sweep's
    cache key) cannot touch the figures, and `mlruns/` lands in the temporary folder. The commit
    it names ends in `+changes` when the tree held uncommitted work."""
    from madness import git
    from tools import sandbox

    sandbox.snapshot(dest)
    commit = git.head(dest)[:12]
    return dest, f"{commit}+changes" if git.is_dirty(dest) else commit


def child_env(project: Path) -> dict:
    """Environment of a sweep subprocess: this interpreter's bin first on PATH (the MLproject
    commands call `python`), the project on PYTHONPATH, the temporary store inherited."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(project)
    env["BENCH_PROJECT"] = str(project)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_sweep(project: Path, args: list[str], log: Path | None = None, echo: bool = True) -> float:
    """Run `python -m steps.main ARGS` in `project`; return its wall time in seconds. Exits on failure."""
    cmd = [sys.executable, "-m", "steps.main", *args]
    if echo:
        print(f"$ {' '.join(shlex.quote(c) for c in cmd[1:])}", flush=True)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=project, env=child_env(project), capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    output = proc.stdout + proc.stderr
    if log is not None:
        with open(log, "a") as handle:
            handle.write(f"$ {' '.join(cmd)}\n{output}\n")
    if proc.returncode != 0:
        print(output[-4000:], file=sys.stderr)
        sys.exit(f"error: the sweep failed (exit {proc.returncode})")
    if echo:  # the sweep's summary, each pair's time, and each train step's own time split
        for line in output.splitlines():
            if line.startswith(("sweep ", "train run ", "ingest")) or ": FINISHED in " in line:
                print(f"  {line.strip()}", flush=True)
    return seconds


def resolve_data(data: str) -> str:
    """'synthetic' as is; a folder made absolute (the sweeps run in a snapshot elsewhere)."""
    if data == "synthetic":
        return data
    path = Path(data).expanduser()
    if not path.is_absolute():
        path = (Path.cwd() / path).resolve()
    if not path.is_dir():
        sys.exit(f"error: data folder {data!r} not found")
    return str(path)


def features(data: str, league: str, seed: int):
    """Return the article's feature table (madness.dataset.Built) of `data` ('synthetic' or a folder of
    Kaggle files), over the default seasons: what the in-process benchmarks train on."""
    from madness import dataset

    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        files, synthetic_data = dataset.read_inputs(data, league, seed, Path(tmp))
        return dataset.build(files, dataset.Seasons(2003, 2019, 2022, 2023), synthetic_data)


def quiet_tensorflow() -> None:
    """Import TensorFlow and silence its Python-side warnings (e.g. retracing notices)."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")


def seconds(value: float) -> str:
    return f"{value:.1f} s"


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False


def sweep_parser(description: str, quick_help: str, epochs: int) -> argparse.ArgumentParser:
    """Return a parser of the arguments every sweep benchmark takes: the grid, epochs, data and league."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--models", default="small,medium,large")
    parser.add_argument("--lrs", default="0.001,0.01,0.1")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument(
        "--data", default="synthetic", help="'synthetic' or a folder of Kaggle files, e.g. ../shared/data/mmlm2024"
    )
    parser.add_argument(
        "--league", default="both", help="M, W or both (the real data here has no men's regular season: use W)"
    )
    return parser


def interpreter_floor(project: Path, code: str, runs: int) -> list[float]:
    """Wall seconds of `runs` fresh interpreters running `code`, one after another, in the sweeps'
    environment: what a new process pays before its own work starts."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        # Output captured: TensorFlow's load-time notices would otherwise fill the benchmark's output.
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=project,
            env=child_env(project),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            sys.exit(f"error: python -c {code!r} failed (exit {proc.returncode})")
        times.append(time.perf_counter() - started)
    return times


# The line steps.train prints last: its own split of a run's seconds.
TRAIN_SPLIT = re.compile(
    r"start-up and data (?P<startup>[\d.]+), training (?P<training>[\d.]+), scoring and logging (?P<scoring>[\d.]+)"
)


def train_split(run) -> dict[str, float]:
    """Return a train run's split as its step tagged it (seconds): startup, training, scoring; empty if untagged."""
    from madness import names

    match = TRAIN_SPLIT.fullmatch(run.data.tags.get(names.TAG_SECONDS, ""))
    return {key: float(match[key]) for key in ("startup", "training", "scoring")} if match else {}


def pair_or_run_name(run) -> str:
    """Return a train run's pair, `<model>_<lr>`; any other run's own name."""
    from madness import names

    params = run.data.params
    if "model" in params and "lr" in params:
        return f"{params['model']}_{params['lr']}"
    return run.data.tags.get(names.TAG_RUN_NAME, "")


def store_runs() -> list[dict]:
    """Every run of the current tracking store with its entry point, name (a train run's pair,
    `<model>_<lr>`: its own name adds its non-default settings), lifetime in the store
    (created to ended, milliseconds apart: for a packaged run, from `mlflow.run` creating it to its
    step ending it) and Brier score (None where it has none)."""
    import mlflow

    from madness import names

    client = mlflow.MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    return [
        {
            "run_id": run.info.run_id,
            "entry_point": run.data.tags.get(names.TAG_PROJECT_ENTRY_POINT, ""),
            "name": pair_or_run_name(run),
            "seconds": ((run.info.end_time or run.info.start_time) - run.info.start_time) / 1000,
            "brier": run.data.metrics.get(names.BRIER),
            **train_split(run),
        }
        for run in client.search_runs(experiments, max_results=1000)
    ]
