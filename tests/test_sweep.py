"""The sweep (`python -m steps.main`) and the report step, end to end: real MLflow, real subprocesses
(the refusals before any child starts: steps.main in the test's process).

Every sweep runs on a snapshot of the working tree (with its .git), not on the repo itself: the cache
keys on the git commit and the tree's state, so an edit or commit made in the repo while these tests
run would otherwise turn the "second invocation reuses every run" check into a fresh sweep.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
import pytest

import madness.sweep
import steps.main
from conftest import run_cli
from madness import names, scoring
from madness.report import BRIER_WORDS
from stores import last_line, ok, snapshot
from tools import sandbox

pytestmark = pytest.mark.slow

GRID = ["--models", "small,medium", "--lrs", "0.01,0.1", "--epochs", "2"]
NAMES = {"small_0.01", "small_0.1", "medium_0.01", "medium_0.1"}  # each pair's; its run is named <pair>_epochs2
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SWEEP_TIMEOUT = 1500
HEADER = "| model | lr | seeds | brier_mean | brier_sd | brier |"  # the runs table, best mean Brier first
TIMINGS: dict[str, float] = {}  # wall times of the sweeps, printed at the end of the module (pytest -s shows them)


@dataclass
class Store:
    folder: Path
    project: Path
    uri: str
    client: mlflow.MlflowClient = field(init=False)

    def __post_init__(self):
        self.client = mlflow.MlflowClient(tracking_uri=self.uri)

    def cli(self, module: str, *args: str, timeout: int = SWEEP_TIMEOUT):
        env = {"MLFLOW_TRACKING_URI": self.uri, "PYTHONPATH": str(self.project)}
        return run_cli([sys.executable, "-m", module, *args], cwd=self.folder, env=env, timeout=timeout)

    def sweep(self, *args: str, label: str | None = None):
        start = time.perf_counter()
        result = self.cli("steps.main", *args)
        if label:
            TIMINGS[label] = time.perf_counter() - start
        return result

    def refused(self, capfd, monkeypatch, *args: str) -> subprocess.CompletedProcess:
        """steps.main's main given `args` in this process, from the store's folder: how it exited and
        what it printed. For a sweep refused before it starts any child; test_startup holds what a
        step's one-line error does to its own process."""
        monkeypatch.chdir(self.folder)
        capfd.readouterr()
        with pytest.raises(SystemExit) as exit_:
            steps.main.main(list(args))
        printed = capfd.readouterr()
        return subprocess.CompletedProcess(["steps.main", *args], exit_.value.code, printed.out, printed.err)

    def runs(self, experiment: str, filter_string: str = "") -> list:
        exp = self.client.get_experiment_by_name(experiment)
        return (
            []
            if exp is None
            else self.client.search_runs([exp.experiment_id], filter_string, order_by=["attributes.start_time ASC"])
        )

    def by_name(self, experiment: str) -> dict[str, list]:
        """Runs by their pair's name, <model>_<lr> (a run's own name adds its non-default settings)."""
        named: dict[str, list] = {}
        for run in self.runs(experiment):
            named.setdefault(pair_name(run), []).append(run)
        return named

    def sweeps(self, prefix: str) -> list:
        return self.runs(prefix, f"tags.{names.TAG_ENTRY_POINT} = 'main'")

    def ingests(self, prefix: str) -> list:
        return self.runs(prefix, f"tags.{names.TAG_ENTRY_POINT} = 'ingest'")

    def artifact(self, run_id: str, path: str) -> Path:
        (self.folder / "downloads").mkdir(exist_ok=True)
        return Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id,
                artifact_path=path,
                tracking_uri=self.uri,
                dst_path=tempfile.mkdtemp(dir=self.folder / "downloads"),
            )
        )

    def runs_csv(self, sweep_id: str) -> pd.DataFrame:
        return pd.read_csv(
            self.artifact(sweep_id, f"{names.REPORT_DIR}/{names.RUNS_CSV}"), dtype={"lr": str, "run_id": str}
        )


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep_store")
    project = snapshot(tmp_path_factory.mktemp("snapshot") / "project")
    with sandbox.temp_store(folder) as (uri, _):
        try:
            yield Store(folder, project, uri)
        finally:
            if TIMINGS:
                print("\nsweep wall times: " + ", ".join(f"{k} {v:.0f}s" for k, v in TIMINGS.items()))


# --- the first sweep: 2 models x 2 learning rates, shared by the tests below ---


@dataclass
class Sweep:
    result: object
    sweep_id: str
    children: dict  # pair name -> Run


def pair_name(run) -> str:
    return f"{run.data.params['model']}_{run.data.params['lr']}"


@pytest.fixture(scope="module")
def first(store):
    result = store.sweep(*GRID, "--prefix", "t", label="first sweep (4 pairs, jobs=1)")
    ok(result)
    (sweep,) = store.sweeps("t")
    children = {pair_name(run): run for exp in ("t_small", "t_medium") for run in store.runs(exp)}
    return Sweep(result, sweep.info.run_id, children)


def test_each_run_is_named_by_its_pair_and_the_setting_that_is_not_trains_default(first):
    assert {run.info.run_name for run in first.children.values()} == {f"{name}_epochs2" for name in NAMES}


def test_one_experiment_per_model_with_one_finished_run_per_lr(store, first):
    assert {name: len(runs) for name, runs in store.by_name("t_small").items()} == {"small_0.01": 1, "small_0.1": 1}
    assert {name: len(runs) for name, runs in store.by_name("t_medium").items()} == {"medium_0.01": 1, "medium_0.1": 1}
    for name, run in first.children.items():
        model, lr = name.split("_")
        assert run.info.status == "FINISHED", name
        assert run.data.tags[names.TAG_SWEEP] == first.sweep_id
        assert run.data.tags[names.TAG_ENTRY_POINT] == "train"
        assert (run.data.params["model"], run.data.params["lr"], run.data.params["epochs"]) == (model, lr, "2")
        assert 0 < run.data.metrics[names.BRIER] < 1


def test_each_pair_is_a_packaged_run_started_by_the_sweep_itself(store, first):
    """Each pair is launched through MLflow's public `mlflow.projects.run`, synchronously in a worker
    thread of the sweep: the run created with the project's tags, on the local backend, as a child
    of the sweep run."""
    for name, run in first.children.items():
        tags = run.data.tags
        assert tags[names.TAG_PROJECT_ENTRY_POINT] == "train" and tags["mlflow.project.backend"] == "local", name
        assert tags[names.TAG_PARENT_RUN] == first.sweep_id and tags[names.TAG_RUN_NAME] == f"{name}_epochs2"
        assert tags[names.TAG_COMMIT] == store.sweeps("t")[0].data.tags[names.TAG_COMMIT]


def test_the_sweep_run_holds_the_pairs_and_the_report(store, first):
    sweep = store.client.get_run(first.sweep_id)
    assert sweep.info.status == "FINISHED" and sweep.info.run_name == "sweep"
    assert store.client.get_experiment(sweep.info.experiment_id).name == "t"
    files = {f.path for f in store.client.list_artifacts(first.sweep_id)} | {
        f.path for f in store.client.list_artifacts(first.sweep_id, names.REPORT_DIR)
    }
    assert {
        names.PAIRS_FILE,
        *(
            f"{names.REPORT_DIR}/{name}"
            for name in (
                names.RUNS_CSV,
                names.RUNS_MD,
                names.BRIER_CHART,
                names.LOSS_GRID,
                names.FILTERED_CSV,
                names.BEST_FILE,
            )
        ),
    } <= files
    pairs = json.loads(store.artifact(first.sweep_id, names.PAIRS_FILE).read_text())
    assert {f"{p['model']}_{p['lr']}": p["run_id"] for p in pairs} == {
        name: run.info.run_id for name, run in first.children.items()
    }
    assert all(p["status"] == "FINISHED" and not p["reused"] for p in pairs)
    assert sweep.data.metrics == {"pairs_trained": 4.0, "pairs_reused": 0.0}


@pytest.mark.parametrize("chart", [names.BRIER_CHART, names.LOSS_GRID])
def test_the_charts_are_real_pngs(store, first, chart):
    data = store.artifact(first.sweep_id, f"{names.REPORT_DIR}/{chart}").read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5_000


def test_runs_csv_has_a_row_per_pair_best_first(store, first):
    table = store.runs_csv(first.sweep_id)
    assert {
        "model",
        "lr",
        names.BRIER,
        names.LOG_LOSS,
        names.ACCURACY,
        names.BEST_EPOCH,
        "duration_s",
        "run_id",
    } <= set(table.columns)
    assert len(table) == 4
    assert dict(zip(table["model"] + "_" + table["lr"], table["run_id"], strict=True)) == {
        name: run.info.run_id for name, run in first.children.items()
    }
    assert table[names.BRIER].is_monotonic_increasing
    for record in table.to_dict("records"):
        assert record[names.BRIER] == pytest.approx(
            first.children[f"{record['model']}_{record['lr']}"].data.metrics[names.BRIER]
        )
        assert 1 <= record[names.BEST_EPOCH] <= 2 and record["duration_s"] > 0 and 0 <= record[names.ACCURACY] <= 1
        # One seed: its mean is its Brier, and there is no spread.
        assert (
            record["seeds"] == 1
            and record[names.BRIER_MEAN] == record[names.BRIER]
            and math.isnan(record[names.BRIER_SD])
        )
    markdown = store.artifact(first.sweep_id, f"{names.REPORT_DIR}/{names.RUNS_MD}").read_text().splitlines()
    assert len(markdown) == 2 + 4 + 2 and markdown[0].startswith(HEADER)
    assert markdown[-2:] == ["", BRIER_WORDS]  # what brier and brier_mean mean, below the table


def test_the_report_says_how_sure_the_best_is_from_both_runs_predictions(store, first, tmp_path):
    best = json.loads(store.artifact(first.sweep_id, f"{names.REPORT_DIR}/{names.BEST_FILE}").read_text())
    best_run, runner_up = sorted(first.children.values(), key=lambda run: run.data.metrics[names.BRIER])[:2]
    frames = [pd.read_csv(store.artifact(run.info.run_id, names.PREDICTIONS_FILE)) for run in (best_run, runner_up)]
    interval = scoring.paired_brier_difference(
        frames[0][names.TARGET],
        frames[0][names.PREDICTION],
        frames[1][names.PREDICTION],
        scoring.game_labels(frames[0]),
    )
    assert best["how_sure"].startswith(
        f"against the runner-up {runner_up.data.params['model']} with learning rate {runner_up.data.params['lr']} "
    )
    assert (
        f"[{interval.low:+.4f}, {interval.high:+.4f}] over {len(frames[0]) // 2} games resampled: " in best["how_sure"]
    )


def test_best_json_names_the_best_run(store, first):
    best = json.loads(store.artifact(first.sweep_id, f"{names.REPORT_DIR}/{names.BEST_FILE}").read_text())
    winner = min(first.children.values(), key=lambda run: run.data.metrics[names.BRIER])
    assert best["best"]["run_id"] == winner.info.run_id
    assert best["best_model_uri"] == f"runs:/{winner.info.run_id}/{names.MODEL_DIR}"
    assert best["filter"] == "metrics.brier < 0.25"
    assert set(best["passing"]) == {
        run.info.run_id for run in first.children.values() if run.data.metrics[names.BRIER] < 0.25
    }


def test_one_ingest_run_feeds_every_pair(store, first):
    (ingest,) = store.ingests("t")
    assert ingest.info.status == "FINISHED"
    assert ingest.data.tags[names.TAG_SWEEP] == first.sweep_id
    games = store.artifact(ingest.info.run_id, f"{names.FEATURES_DIR}/{names.GAMES_FILE}").read_bytes()
    for run in first.children.values():
        assert run.data.params["features_uri"] == f"runs:/{ingest.info.run_id}/{names.FEATURES_DIR}"
        assert run.data.tags[names.TAG_DATA_DIGEST] == ingest.data.tags[names.TAG_DATA_DIGEST]
        for dataset_input in run.inputs.dataset_inputs:  # the source is the ingest run's games.csv in the store
            assert Path(mlflow.data.get_source(dataset_input.dataset).load()).read_bytes() == games


def test_stdout_shows_progress_the_table_and_the_best(first):
    out = first.result.stdout
    # With jobs at the usable cores two pairs may end in one poll: a count may be skipped, never repeated out of order.
    counts = [int(count) for count in re.findall(r"\[(\d)/4 done\]", out)]
    assert counts[0] == 0 and counts[-1] == 4 and counts == sorted(counts)
    assert "4 pairs, 0 reused, 4 to train" in out
    for name in NAMES:
        assert f"  {name}: FINISHED in " in out
    assert HEADER in out
    sure_line, best_line = out.strip().splitlines()[-2:]
    assert sure_line.startswith("how sure: against the runner-up ") and " games resampled: " in sure_line
    assert best_line.startswith("best: ")
    assert (
        f"-> runs:/{min(first.children.values(), key=lambda run: run.data.metrics[names.BRIER]).info.run_id}/model"
        in out
    )


# --- the same command again: everything comes from the cache ---


@pytest.fixture(scope="module")
def second(store, first):
    before = {exp: {r.info.run_id for r in store.runs(exp)} for exp in ("t", "t_small", "t_medium")}
    result = store.sweep(*GRID, "--prefix", "t", label="second sweep (all cached)")
    return result, before


def test_a_second_invocation_reuses_every_pair(store, first, second):
    result, before = second
    ok(result)
    assert "4 pairs, 4 reused, 0 to train" in result.stdout
    for exp in ("t_small", "t_medium"):
        assert {r.info.run_id for r in store.runs(exp)} == before[exp]
    latest = store.sweeps("t")[-1]
    assert latest.info.run_id != first.sweep_id
    pairs = json.loads(store.artifact(latest.info.run_id, names.PAIRS_FILE).read_text())
    assert {f"{p['model']}_{p['lr']}": p["run_id"] for p in pairs} == {
        name: run.info.run_id for name, run in first.children.items()
    }
    assert all(p["reused"] for p in pairs)
    assert latest.data.metrics == {"pairs_trained": 0.0, "pairs_reused": 4.0}


def test_a_second_invocation_copies_the_unchanged_figures_of_the_first(store, first, second):
    result, _ = second
    latest = store.sweeps("t")[-1].info.run_id
    assert f"figures unchanged since run {first.sweep_id}: copied, not drawn again" in result.stdout
    for chart in (names.BRIER_CHART, names.LOSS_GRID):
        path = f"{names.REPORT_DIR}/{chart}"
        assert store.artifact(latest, path).read_bytes() == store.artifact(first.sweep_id, path).read_bytes()


def test_a_second_invocation_reuses_the_ingest(store, first, second):
    result, before = second
    (ingest,) = store.ingests("t")
    assert f"ingest: reusing run {ingest.info.run_id}" in result.stdout
    assert {r.info.run_id for r in store.runs("t")} - before["t"] == {store.sweeps("t")[-1].info.run_id}


# --- the report entry point on its own ---


def test_report_on_its_own_writes_the_report_again_with_its_filter(store, first):
    result = store.cli("steps.report", "--sweep_run_id", first.sweep_id, "--filter", "metrics.brier < 0.3")
    ok(result)
    table = store.runs_csv(first.sweep_id)
    passing = set(table.loc[table[names.BRIER] < 0.3, "run_id"])
    filtered = pd.read_csv(store.artifact(first.sweep_id, f"{names.REPORT_DIR}/{names.FILTERED_CSV}"))
    assert set(filtered["run_id"]) == passing
    best = json.loads(store.artifact(first.sweep_id, f"{names.REPORT_DIR}/{names.BEST_FILE}").read_text())
    assert best["filter"] == "metrics.brier < 0.3" and set(best["passing"]) == passing
    assert f"{len(passing)} run(s) pass the filter 'metrics.brier < 0.3'" in result.stdout
    # its own run keeps a copy and points at the sweep
    (own,) = [
        r
        for r in store.runs("Default")
        if r.data.tags.get(names.TAG_SWEEP) == first.sweep_id and r.data.params.get("filter") == "metrics.brier < 0.3"
    ]
    assert own.info.status == "FINISHED" and own.data.tags[names.TAG_ENTRY_POINT] == "report"
    assert names.RUNS_CSV in {Path(f.path).name for f in store.client.list_artifacts(own.info.run_id, names.REPORT_DIR)}


def test_report_on_its_own_refuses_a_bad_filter_in_one_line_and_keeps_the_report(store, first):
    best_file = f"{names.REPORT_DIR}/{names.BEST_FILE}"
    before = store.artifact(first.sweep_id, best_file).read_text()
    result = store.cli("steps.report", "--sweep_run_id", first.sweep_id, "--filter", "metrics.brier <<< 1")
    assert result.returncode == 1
    assert last_line(result.stderr).startswith("error: bad filter 'metrics.brier <<< 1' (")
    assert "Traceback" not in result.stderr
    assert store.artifact(first.sweep_id, best_file).read_text() == before
    (own,) = [r for r in store.runs("Default") if r.data.params.get("filter") == "metrics.brier <<< 1"]
    assert own.info.status == "FAILED"


@pytest.fixture(scope="module")
def registered(store, first):
    result = store.cli("steps.report", "--sweep_run_id", first.sweep_id, "--register", "true")
    ok(result)
    return result


def versions(store, name: str) -> dict[str, str]:
    """run id -> version number"""
    return {v.run_id: v.version for v in store.client.search_model_versions(f"name = '{name}'")}


def passing(first) -> dict:
    """name -> run of the pairs that pass the report's default filter, brier < 0.25."""
    return {name: run for name, run in first.children.items() if run.data.metrics[names.BRIER] < 0.25}


def test_register_makes_a_version_only_of_each_run_passing_the_filter(store, first, registered):
    assert passing(first), "the grid's lr=0.01 pairs pass the filter"
    for model in ("small", "medium"):
        assert set(versions(store, f"t_{model}")) == {
            run.info.run_id for name, run in passing(first).items() if name.startswith(model + "_")
        }
    assert set(versions(store, "t")) == {run.info.run_id for run in passing(first).values()}


def test_champion_is_each_models_best_brier_version_and_the_prefix_names_the_best_of_all(store, first, registered):
    for model in ("small", "medium"):
        runs = [run for name, run in passing(first).items() if name.startswith(model + "_")]
        if runs:
            best = min(runs, key=lambda run: run.data.metrics[names.BRIER])
            assert store.client.get_model_version_by_alias(f"t_{model}", "champion").run_id == best.info.run_id
    best = min(passing(first).values(), key=lambda run: run.data.metrics[names.BRIER])
    assert store.client.get_model_version_by_alias("t", "champion").run_id == best.info.run_id


def test_registering_again_reuses_the_versions(store, first, registered):
    before = {name: versions(store, name) for name in ("t", "t_small", "t_medium")}
    ok(store.cli("steps.report", "--sweep_run_id", first.sweep_id, "--register", "true"))
    assert {name: versions(store, name) for name in ("t", "t_small", "t_medium")} == before


def test_the_printed_champion_uri_loads_and_predicts(store, first, registered):
    winner = min(first.children.values(), key=lambda run: run.data.metrics[names.BRIER])
    uri = "models:/t@champion"  # the best over all architectures
    assert last_line(registered.stdout).endswith(f"-> {uri}")
    model = mlflow.pyfunc.load_model(uri)
    assert model.metadata.run_id == winner.info.run_id
    (ingest,) = store.ingests("t")
    games = pd.read_csv(store.artifact(ingest.info.run_id, f"{names.FEATURES_DIR}/{names.GAMES_FILE}"))
    columns = model.metadata.get_input_schema().input_names()
    p = model.predict(games[columns].head(20))  # typed as pandas reads them: seeds long, the rest double
    assert len(p) == 20 and ((p > 0) & (p < 1)).all()


# --- a pair that fails ---


@pytest.fixture(scope="module")
def broken(store):
    # a learning rate that diverges: a valid value, whose pair alone fails when it trains
    result = store.sweep("--models", "small", "--lrs", "0.01,1e30", "--epochs", "2", "--prefix", "tb")
    return result, store.by_name("tb_small")


def test_a_failed_pair_fails_the_sweep_and_is_named_last(broken):
    result, _ = broken
    assert result.returncode != 0, result.stdout
    assert (
        last_line(result.stderr) == "error: 1 of 2 pairs failed: small_1e+30; run the sweep again to retry only those"
    )
    assert "  small_1e+30: FAILED in " in result.stdout


def test_the_valid_pair_finishes_and_the_bad_one_is_failed_not_running(store, broken):
    _, runs = broken
    assert {name: [r.info.status for r in rs] for name, rs in runs.items()} == {
        "small_0.01": ["FINISHED"],
        "small_1e+30": ["FAILED"],
    }
    assert store.sweeps("tb")[0].info.status == "FAILED"
    table = store.runs_csv(store.sweeps("tb")[0].info.run_id)
    assert list(table["lr"]) == ["0.01", "1e+30"] and list(table["status"]) == ["FINISHED", "FAILED"]
    assert pd.isna(table[names.BRIER][1])


def test_running_again_retrains_only_the_failed_pair(store, broken):
    _, runs = broken
    again = store.sweep("--models", "small", "--lrs", "0.01,1e30", "--epochs", "2", "--prefix", "tb")
    assert again.returncode != 0
    assert "2 pairs, 1 reused, 1 to train" in again.stdout
    assert "small_1e+30" in last_line(again.stderr)
    now = store.by_name("tb_small")
    assert [r.info.run_id for r in now["small_0.01"]] == [r.info.run_id for r in runs["small_0.01"]]
    assert [r.info.status for r in now["small_1e+30"]] == ["FAILED", "FAILED"]
    assert len(store.ingests("tb")) == 1


# --- two pairs at once ---


@pytest.fixture(scope="module")
def parallel(store):
    result = store.sweep(
        "--models",
        "small",
        "--lrs",
        "0.01,0.1",
        "--epochs",
        "2",
        "--jobs",
        "2",
        "--prefix",
        "tj",
        label="2 pairs, jobs=2",
    )
    return result, {name: rs[0] for name, rs in store.by_name("tj_small").items()}


def test_two_jobs_finish_every_pair_without_locking_the_store(parallel):
    result, runs = parallel
    ok(result)
    assert "database is locked" not in result.stdout + result.stderr
    assert {name: run.info.status for name, run in runs.items()} == {"small_0.01": "FINISHED", "small_0.1": "FINISHED"}
    assert "running: small_0.01, small_0.1;" in result.stdout  # both at once
    assert {run.data.params["threads"] for run in runs.values()} == {str(madness.sweep.threads_per_job(2))}


def test_force_reruns_everything(store, parallel):
    _, runs = parallel
    old_ingest = {r.info.run_id for r in store.ingests("tj")}
    result = store.sweep(
        "--models",
        "small",
        "--lrs",
        "0.01,0.1",
        "--epochs",
        "2",
        "--jobs",
        "2",
        "--prefix",
        "tj",
        "--force",
        "true",
        label="2 pairs, jobs=2, force",
    )
    ok(result)
    assert "2 pairs, 0 reused, 2 to train" in result.stdout and "ingest: running" in result.stdout
    now = store.by_name("tj_small")
    assert (len(now["small_0.01"]), len(now["small_0.1"])) == (2, 2)
    for name, run in runs.items():
        new = now[name][-1]
        assert new.info.run_id != run.info.run_id and new.info.status == "FINISHED"
    assert len({r.info.run_id for r in store.ingests("tj")} - old_ingest) == 1


# --- a child whose environment cannot be built (conda is not installed here) ---

without_conda = pytest.mark.skipif(
    shutil.which("conda") is not None, reason="conda is installed: the environment would build"
)


def test_a_sweep_without_test_seasons_is_refused_in_one_line_before_any_run(store, capfd, monkeypatch):
    result = store.refused(
        capfd,
        monkeypatch,
        *("--models", "small", "--lrs", "0.1", "--val_season", "2023", "--test_season", "2024", "--prefix", "nt"),
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert last_line(result.stderr).startswith(
        "error: a sweep compares its pairs by their Brier on the test seasons: test_season must be at most last_season (2023), got 2024"
    )
    assert store.runs("nt") == []


@without_conda
def test_an_ingest_that_cannot_start_gives_one_line_and_leaves_nothing_running(store):
    result = store.sweep(
        "--models", "small", "--lrs", "0.1", "--epochs", "1", "--env_manager", "conda", "--prefix", "tc"
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert last_line(result.stderr).startswith("error: the ingest run could not start: Could not find Conda executable")
    assert sorted((r.info.run_name, r.info.status) for r in store.runs("tc")) == [
        ("ingest", "FAILED"),
        ("sweep", "FAILED"),
    ]
    assert store.client.get_experiment_by_name("tc_small") is None


def test_a_kubernetes_sweep_without_a_docker_engine_gives_one_line_and_starts_no_run(
    store, tmp_path, monkeypatch, capfd
):
    # The sweep builds the children's image before it starts a run; no engine listens on this socket.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    (tmp_path / "job.yaml").write_text("apiVersion: batch/v1\nkind: Job\n")
    config = tmp_path / "kubernetes_config.json"
    config.write_text(json.dumps({"kube-job-template-path": "job.yaml", "repository-uri": "localhost:5001/madness"}))
    result = store.refused(
        capfd, monkeypatch, "--models", "small", "--lrs", "0.1", "--epochs", "1", "--backend", "kubernetes",
        "--backend_config", str(config), "--prefix", "tk",
    )  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert last_line(result.stderr).startswith("error: no Docker engine to build the image localhost:5001/madness:")
    assert store.client.get_experiment_by_name("tk") is None


@without_conda
def test_a_pair_that_cannot_start_fails_alone_and_is_not_left_running(store, parallel):
    result = store.sweep(
        "--models", "small", "--lrs", "0.5", "--epochs", "1", "--env_manager", "conda", "--prefix", "tj"
    )
    assert result.returncode != 0
    assert "ingest: reusing run" in result.stdout  # the ingest of the local sweeps stands for this one too
    assert "  small_0.5: FAILED to start: Could not find Conda executable" in result.stdout
    assert last_line(result.stderr) == "error: 1 of 1 pairs failed: small_0.5; run the sweep again to retry only those"
    (run,) = store.by_name("tj_small")["small_0.5"]
    sweep_id = store.sweeps("tj")[-1].info.run_id
    assert run.info.status == "FAILED" and run.data.tags[names.TAG_SWEEP] == sweep_id
    (pair,) = json.loads(store.artifact(sweep_id, names.PAIRS_FILE).read_text())
    assert (pair["run_id"], pair["status"]) == (run.info.run_id, "FAILED")


# --- bad arguments stop the sweep before any training ---


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--filter", "metrics.brier <<< 1"], "bad filter 'metrics.brier <<< 1'"),
        (["--env_manager", "docker"], "unknown env_manager 'docker'; accepted: local, virtualenv, uv, conda"),
        (["--backend", "docker"], "unknown backend 'docker'; accepted: local, kubernetes"),
        (["--backend_config", "k.json"], "backend_config is for backend=kubernetes; backend=local takes none"),
        (["--models", ""], "models must be a comma-separated list"),
        (["--lrs", "0.1,1e-1"], "lrs lists 0.1 twice (as '0.1' and '1e-1')"),
    ],
    ids=["filter", "env_manager", "backend", "backend_config", "models", "lrs"],
)
def test_bad_arguments_give_a_one_line_error_and_train_nothing(store, args, says, capfd, monkeypatch):
    prefix = f"te_{args[0].strip('-')}"
    result = store.refused(
        capfd, monkeypatch, "--models", "small", "--lrs", "0.1", "--epochs", "1", "--prefix", prefix, *args
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0] == last_line(result.stderr), result.stderr
    assert says in errors[0]
    assert store.runs(prefix) == [] and store.client.get_experiment_by_name(f"{prefix}_small") is None


# --- the pinned environment, built by MLflow ---


@pytest.mark.timeout(
    1800
)  # the first build of the environment (pip installs TensorFlow) takes minutes; MLflow caches it
def test_virtualenv_sweep_runs_every_child_in_the_pinned_environment(store):
    result = store.sweep(
        "--models",
        "small",
        "--lrs",
        "0.01",
        "--epochs",
        "1",
        "--env_manager",
        "virtualenv",
        "--prefix",
        "tv",
        label="1 pair, env_manager=virtualenv",
    )
    ok(result)
    assert "env_manager=virtualenv" in result.stdout
    (child,) = store.runs("tv_small")
    (ingest,) = store.ingests("tv")
    for run in (child, ingest):
        assert run.info.status == "FINISHED"
        assert run.data.tags[names.TAG_PROJECT_ENV] == "virtualenv"
    assert child.data.params["features_uri"] == f"runs:/{ingest.info.run_id}/{names.FEATURES_DIR}"
