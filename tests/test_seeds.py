"""The README's "Several seeds per pair": its sweep, run as shown in a snapshot of the project on a
store of its own, gives per-pair means and spreads, intervals, a report ranked by mean Brier that
says how sure its best is, and a cache that treats `seeds` as any other param."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, run_cli
from madness import names
from tools import sandbox

pytestmark = pytest.mark.slow

SECTION = "### Several seeds per pair"
SEEDS = 3


def readme_command() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION) :]
    block = section[section.index("```bash\n") + len("```bash\n") :]
    (line,) = [line for line in block[: block.index("```")].splitlines() if line.strip()]
    return line


def report_file(client, sweep_id: str, name: str, folder) -> str:
    return client.download_artifacts(sweep_id, f"{names.REPORT_DIR}/{name}", str(folder))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    home = tmp_path_factory.mktemp("seeds")
    project = sandbox.snapshot(home / "project")
    # No default experiment: the README's command names its own (mlflow run refuses a name and an id).
    with sandbox.temp_store(home) as (uri, _):
        done = run_cli(shlex.split(readme_command()), cwd=project)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        client = mlflow.MlflowClient(uri)
        sweep_id = re.search(r"sweep (\w+): ", done.stdout)[1]
        pairs = mlflow.artifacts.load_dict(f"runs:/{sweep_id}/{names.PAIRS_FILE}")
        runs = {p["run_id"]: client.get_run(p["run_id"]) for p in pairs}
        table = pd.read_csv(report_file(client, sweep_id, names.RUNS_CSV, home))
        best = json.loads(Path(report_file(client, sweep_id, names.BEST_FILE, home)).read_text())
        yield SimpleNamespace(
            client=client, project=project, printed=done.stdout, runs=runs, table=table, best=best, pairs=pairs
        )


def test_the_command_trains_the_articles_grid_each_pair_from_three_seeds(sweep):
    assert len(sweep.runs) == 9
    for run in sweep.runs.values():
        assert run.info.status == "FINISHED"
        assert run.data.params["seeds"] == str(SEEDS) and run.data.params["epochs"] == "5"


def test_each_pair_logs_its_members_brier_mean_spread_and_interval(sweep):
    for run in sweep.runs.values():
        members = [m.value for m in sweep.client.get_metric_history(run.info.run_id, names.BRIER_SEED)]
        metrics = run.data.metrics
        assert len(members) == SEEDS
        assert metrics[names.BRIER_MEAN] == float(np.mean(members))
        assert metrics[names.BRIER_SD] == float(np.std(members, ddof=1))
        assert (
            metrics[names.BRIER_VS_BASELINE_LOW]
            <= metrics[names.BRIER_VS_BASELINE]
            <= metrics[names.BRIER_VS_BASELINE_HIGH]
        )


def test_the_report_shows_mean_and_sd_per_pair_best_mean_first(sweep):
    table = sweep.table
    assert (table["seeds"] == SEEDS).all()
    for row in table.itertuples():
        metrics = sweep.runs[row.run_id].data.metrics
        assert (row.brier_mean, row.brier_sd, row.brier) == (
            metrics[names.BRIER_MEAN],
            metrics[names.BRIER_SD],
            metrics[names.BRIER],
        )
    assert table[names.BRIER_MEAN].is_monotonic_increasing


def test_the_best_is_the_lowest_mean_brier_and_the_report_says_how_sure(sweep):
    lowest = min(sweep.runs.values(), key=lambda r: r.data.metrics[names.BRIER_MEAN])
    assert sweep.best["best"]["run_id"] == lowest.info.run_id
    assert sweep.best["how_sure"].startswith("against the runner-up ")
    assert "the averaged models' difference" in sweep.best["how_sure"]
    lines = sweep.printed.strip().splitlines()
    assert lines[-2] == f"how sure: {sweep.best['how_sure']}"
    mean, sd = lowest.data.metrics[names.BRIER_MEAN], lowest.data.metrics[names.BRIER_SD]
    assert lines[-1] == (
        f"best: {lowest.data.params['model']} with learning rate {lowest.data.params['lr']}, "
        f"mean brier {mean:.4f} +- {sd:.4f} over {SEEDS} seeds -> runs:/{lowest.info.run_id}/{names.MODEL_DIR}"
    )


def test_the_same_command_again_reuses_every_pair_and_another_seeds_count_trains_again(sweep):
    again = run_cli(shlex.split(readme_command()), cwd=sweep.project)
    assert again.returncode == 0 and "9 reused, 0 to train" in again.stdout, again.stdout[-2000:]
    command = readme_command().replace(f"-P seeds={SEEDS}", "-P seeds=2 -P models=small -P lrs=0.01")
    other = run_cli(shlex.split(command), cwd=sweep.project)
    assert other.returncode == 0 and "1 pairs, 0 reused, 1 to train" in other.stdout, other.stdout[-2000:]
