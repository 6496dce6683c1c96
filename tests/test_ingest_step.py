"""The ingest entry point: in-process on real and synthetic data and on bad inputs, and through `mlflow run`."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pandas as pd
import pytest

from conftest import REAL_DATA, ROOT, run_cli, runs_of
from madness import names
from steps.ingest import main
from stores import temp_store
from tools import sandbox

FEATURE_FILES = (names.GAMES_FILE, names.TEAM_SEASON_FILE, names.SCALER_FILE, names.MANIFEST_FILE)
pytestmark = pytest.mark.usefixtures("synthetic_league_once")

W_FILES = ("WRegularSeasonCompactResults.csv", "WNCAATourneyCompactResults.csv", "WNCAATourneySeeds.csv", "WTeams.csv")


def all_artifacts(client: mlflow.MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    files = []
    for info in client.list_artifacts(run_id, path):
        files += all_artifacts(client, run_id, info.path) if info.is_dir else [info.path]
    return files


# --- (a) real women's data, in-process: one run shared by the tests that read it ---


class RealRun:
    def __init__(self, uri: str, run, features: Path, out: str):
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        self.run, self.features, self.out = run, features, out
        self.games = pd.read_csv(features / names.GAMES_FILE)
        self.team_season = pd.read_csv(features / names.TEAM_SEASON_FILE)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    if not (REAL_DATA / W_FILES[0]).is_file():
        pytest.skip(f"real Kaggle data not found at {REAL_DATA}")
    folder = tmp_path_factory.mktemp("real_w")
    with temp_store(folder) as (uri, _):
        out = io.StringIO()
        with redirect_stdout(out):
            main(["--data", str(REAL_DATA), "--league", "W"])
        client = mlflow.MlflowClient(tracking_uri=uri)
        (run,) = runs_of()
        features = Path(
            mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path=names.FEATURES_DIR, dst_path=str(folder / "download")
            )
        )
        return RealRun(uri, client.get_run(run.info.run_id), features, out.getvalue())


@pytest.mark.realdata
def test_real_run_finishes_and_says_where_the_features_are(real_run):
    assert real_run.run.info.status == "FINISHED"
    assert f"runs:/{real_run.run.info.run_id}/features" in real_run.out


@pytest.mark.realdata
def test_real_run_has_67_tournament_games_in_2023(real_run):
    games = real_run.games
    rows = games[(games[names.SEASON] == 2023) & (games[names.LEAGUE] == "W")]
    assert len(rows) == 2 * 67
    assert rows[names.TARGET].sum() == 67


@pytest.mark.realdata
def test_real_run_has_68_seeded_teams_in_2024(real_run):
    team = real_run.team_season
    assert team[(team[names.SEASON] == 2024) & team[names.SEED_NUM].notna()][names.TEAM_ID].nunique() == 68


@pytest.mark.realdata
def test_real_run_splits_by_the_default_seasons(real_run):
    games = real_run.games
    assert games.groupby(names.SPLIT)[names.SEASON].agg(["min", "max"]).to_dict("index") == {
        "train": {"min": 2003, "max": 2018},
        "val": {"min": 2019, "max": 2021},
        "test": {"min": 2022, "max": 2023},
    }
    assert 2020 not in set(games[names.SEASON])  # no tournament that year


@pytest.mark.realdata
def test_real_run_logs_the_feature_folder(real_run):
    assert sorted(all_artifacts(real_run.client, real_run.run.info.run_id)) == sorted(
        f"{names.FEATURES_DIR}/{name}" for name in FEATURE_FILES
    )


@pytest.mark.realdata
def test_real_run_is_tagged_real_data(real_run):
    tags = real_run.run.data.tags
    assert tags[names.TAG_SYNTHETIC] == "false"
    assert len(tags[names.TAG_DATA_DIGEST]) == 64
    assert tags[names.TAG_ENTRY_POINT] == "ingest"


@pytest.mark.realdata
def test_real_run_logs_params_as_given(real_run):
    params = real_run.run.data.params
    assert params["league"] == "W" and params["data"] == str(REAL_DATA) and params["first_season"] == "2003"


@pytest.mark.realdata
def test_real_run_manifest_matches_the_data_manifest(real_run):
    manifest = json.loads((real_run.features / names.MANIFEST_FILE).read_text())
    with open(REAL_DATA / "MANIFEST.tsv", newline="") as f:
        published = {row["file"]: row for row in csv.DictReader(f, delimiter="\t")}
    assert {e["file"] for e in manifest["files"]} == set(W_FILES)
    for entry in manifest["files"]:
        assert entry["sha256"] == published[entry["file"]]["sha256"], entry["file"]
        assert entry["rows"] == int(published[entry["file"]]["rows"]), entry["file"]
    assert manifest["synthetic"] is False and manifest["box_scores"] is False
    assert manifest["digest"] == real_run.run.data.tags[names.TAG_DATA_DIGEST]


@pytest.mark.realdata
def test_real_run_logs_each_split_as_a_dataset(real_run):
    inputs = real_run.run.inputs.dataset_inputs
    assert inputs
    contexts = {tag.value for i in inputs for tag in i.tags if tag.key == names.TAG_DATA_CONTEXT}
    assert contexts == {"train", "val", "test"}
    assert {i.dataset.name for i in inputs} == {"tournament_train", "tournament_val", "tournament_test"}


@pytest.mark.realdata
def test_real_run_metrics_count_rows_per_split(real_run):
    metrics = real_run.run.data.metrics
    counts = real_run.games[names.SPLIT].value_counts()
    assert {k: metrics[f"rows_{k}"] for k in ("train", "val", "test")} == {
        k: counts[k] for k in ("train", "val", "test")
    }


# --- (b) men's data asked for where the men's regular season is absent ---


@pytest.mark.realdata
def test_men_on_real_data_fails_naming_the_missing_file(tracking, real_data, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--data", str(real_data), "--league", "M"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: missing file MRegularSeasonCompactResults.csv")
    assert "kaggle competitions download" in err[-1]
    client = mlflow.MlflowClient()
    for run in runs_of():
        assert run.info.status == "FAILED"
        assert all_artifacts(client, run.info.run_id) == []
    assert mlflow.active_run() is None


# --- (c) bad inputs, given to the step's main in this process ---


def _missing_file(folder: Path) -> list[str]:
    data = folder / "data"
    data.mkdir()
    for name in W_FILES:
        if name != "WNCAATourneySeeds.csv":
            shutil.copy(REAL_DATA / name, data)
    return ["--data", str(data), "--league", "W"]


def _wrong_column(folder: Path) -> list[str]:
    data = folder / "data"
    data.mkdir()
    for name in W_FILES:
        shutil.copy(REAL_DATA / name, data)
    seeds = data / "WNCAATourneySeeds.csv"
    seeds.write_text(seeds.read_text().replace("Season,Seed,TeamID", "Season,SeedLabel,TeamID", 1))
    return ["--data", str(data), "--league", "W"]


def _winners_swapped_from_2010(folder: Path) -> list[str]:
    data = folder / "data"
    data.mkdir()
    for name in W_FILES:
        shutil.copy(REAL_DATA / name, data)
    games = pd.read_csv(data / W_FILES[0])
    later = games[names.SEASON] >= 2010
    games.loc[later, [names.WSCORE, names.LSCORE]] = games.loc[later, [names.LSCORE, names.WSCORE]].to_numpy()
    games.to_csv(data / W_FILES[0], index=False)
    return ["--data", str(data), "--league", "W"]


BAD_INPUTS = {
    # case: (arguments from a scratch folder, needs real data, words the error line must hold)
    "missing_folder": (
        lambda f: ["--data", str(f / "no_such_folder"), "--league", "W"],
        False,
        ["no_such_folder", "does not exist"],
    ),
    "missing_file": (_missing_file, True, ["missing file WNCAATourneySeeds.csv", "kaggle competitions download"]),
    "wrong_column": (_wrong_column, True, ["WNCAATourneySeeds.csv", "missing column 'Seed'"]),
    "winners_swapped": (
        _winners_swapped_from_2010,
        True,
        [W_FILES[0], "column WScore: rule 'winner above loser'", "accepted: WScore above LScore"],
    ),
    "unknown_league": (lambda f: ["--league", "X"], False, ["unknown league 'X'"]),
    "inverted_seasons": (
        lambda f: ["--val_season", "2022", "--test_season", "2019"],
        False,
        ["first_season < val_season < test_season <= last_season", "2022", "2019"],
    ),
}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    """Every bad-input case given to the step's main, each on a store of its own and from its own
    folder (MLflow's default artifact root, ./mlruns, lands there): how it exited and what it wrote
    to stderr. test_startup holds what a step's one-line error does to its process."""
    real = (REAL_DATA / W_FILES[0]).is_file()
    results = {}
    for case, (arguments, needs_real, _) in BAD_INPUTS.items():
        if needs_real and not real:
            continue
        folder = tmp_path_factory.mktemp(case)
        args = arguments(folder)
        stderr = io.StringIO()
        with pytest.MonkeyPatch.context() as patch, sandbox.temp_store(folder, "tests") as (uri, _):
            patch.chdir(folder)
            with redirect_stderr(stderr), redirect_stdout(io.StringIO()), pytest.raises(SystemExit) as exit_:
                main(args)
        results[case] = (folder, uri, SimpleNamespace(code=exit_.value.code, stderr=stderr.getvalue()))
    return results


def _bad_run(bad_runs, case):
    if case not in bad_runs:
        pytest.skip(f"real Kaggle data not found at {REAL_DATA}")
    return bad_runs[case]


@pytest.mark.slow  # three cases read and check the real women's files, seconds each
@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_exits_with_one_clear_error_line(bad_runs, case):
    _, _, result = _bad_run(bad_runs, case)
    assert result.code not in (0, None), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert last.startswith(("error: ", "ingest: error: ")), result.stderr
    for words in BAD_INPUTS[case][2]:
        assert words in last, last


@pytest.mark.slow  # three cases read and check the real women's files, seconds each
@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_logs_no_artifact_and_leaves_no_run_running(bad_runs, case):
    folder, uri, _ = _bad_run(bad_runs, case)
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)  # none when the step stopped before starting its run
    assert [run.info.status for run in runs if run.info.status != "FAILED"] == []
    assert [all_artifacts(client, run.info.run_id) for run in runs] == [[] for _ in runs]
    assert not [p for p in folder.rglob("*") if p.is_file() and "mlruns" in p.parts]


@pytest.mark.slow  # three cases read and check the real women's files, seconds each
@pytest.mark.parametrize("case", ["unknown_league", "inverted_seasons"])
def test_bad_parameters_stop_before_any_run(bad_runs, case):
    _, uri, _ = _bad_run(bad_runs, case)
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


# --- (d) the default: the synthetic league ---


def test_synthetic_default_is_tagged_synthetic(tracking, capsys):
    main([])
    (run,) = runs_of()
    assert run.info.status == "FINISHED"
    assert run.data.tags[names.TAG_SYNTHETIC] == "true"
    assert run.data.params["data"] == "synthetic" and run.data.params["league"] == "both"
    manifest = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/{names.FEATURES_DIR}/{names.MANIFEST_FILE}")
    assert manifest["synthetic"] is True and manifest["box_scores"] is True
    assert f"runs:/{run.info.run_id}/features" in capsys.readouterr().out


# --- (e) end to end, as the README runs it ---


@pytest.mark.slow
def test_mlflow_run_ingest_end_to_end(tmp_path, monkeypatch):
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "run",
            str(ROOT),
            "-e",
            "ingest",
            "--env-manager",
            "local",
            "-P",
            "league=W",
        ],
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": uri},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED"
    assert f"{names.FEATURES_DIR}/{names.GAMES_FILE}" in all_artifacts(client, run.info.run_id)
    assert run.data.params["league"] == "W"
    assert run.data.tags[names.TAG_SYNTHETIC] == "true"
