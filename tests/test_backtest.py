"""`mlflow run . -e backtest` end to end on the synthetic league (a snapshot of the project, a
temporary store): the season runs, each pair's run, the report, and a second invocation."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pandas as pd
import pytest

from conftest import run_cli
from madness import names
from steps import backtest as backtest_step
from stores import last_line
from tools import sandbox

pytestmark = pytest.mark.usefixtures("synthetic_league_once")

# Synthetic seasons have a tournament every year, 2020 included: 2019-2021 validate on 2018-2020.
COMMAND = (
    "mlflow run . -e backtest -P models=small -P lrs=0.01,0.1 -P epochs=2 -P seasons=2019-2021 "
    "-P choose_until=2020 -P league=W --env-manager local"
)
SEASONS = [2019, 2020, 2021]


@pytest.fixture(scope="module")
def backtest(tmp_path_factory):
    from stores import temp_store

    home = tmp_path_factory.mktemp("backtest")
    project = sandbox.snapshot(home / "project")
    with temp_store(home) as (uri, _):
        first = run_cli(shlex.split(COMMAND), cwd=project)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        again = run_cli(shlex.split(COMMAND), cwd=project)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        client = mlflow.MlflowClient(uri)
        run_id = re.search(r"backtest (\w+): ", first.stdout)[1]
        experiment = client.get_experiment_by_name("fabric_madness_backtest_small")
        runs = client.search_runs([experiment.experiment_id])
        folder = Path(client.download_artifacts(run_id, names.BACKTEST_DIR, str(home)))
        yield SimpleNamespace(
            client=client,
            first=first.stdout,
            again=again.stdout,
            run_id=run_id,
            again_id=re.search(r"backtest (\w+): ", again.stdout)[1],
            season_runs=[r for r in runs if r.data.tags.get(names.TAG_ENTRY_POINT) == "train"],
            pair_runs={r.info.run_name: r for r in runs if r.data.tags.get(names.TAG_ENTRY_POINT) == "backtest_pair"},
            ranking=pd.read_csv(folder / names.RANKING_CSV, dtype={"lr": str}),
            best=json.loads((folder / names.BEST_FILE).read_text()),
            chart=(folder / names.SEASON_CHART).read_bytes(),
            report_files=sorted(path.name for path in folder.iterdir()),
        )


@pytest.mark.slow
def test_each_season_is_a_train_run_validated_on_the_season_before_it(backtest):
    assert len(backtest.season_runs) == 6
    for run in backtest.season_runs:
        params = run.data.params
        season = int(params["test_season"])
        assert run.info.run_name == f"small_{params['lr']}_{season}"
        assert (int(params["val_season"]), int(params["last_season"])) == (season - 1, season)
        assert run.info.status == "FINISHED"


@pytest.mark.slow
def test_each_pair_run_holds_its_season_runs_and_logs_brier_by_season(backtest):
    assert sorted(backtest.pair_runs) == ["small_0.01", "small_0.1"]
    for pair in backtest.pair_runs.values():
        children = [r for r in backtest.season_runs if r.data.tags.get(names.TAG_PARENT_RUN) == pair.info.run_id]
        assert sorted(int(r.data.params["test_season"]) for r in children) == SEASONS
        history = backtest.client.get_metric_history(pair.info.run_id, names.SEASON_BRIER)
        by_season = {m.step: m.value for m in history}
        assert by_season == pytest.approx(
            {int(r.data.params["test_season"]): r.data.metrics[names.BRIER] for r in children}
        )
        assert pair.data.params["seasons"] == "2019,2020,2021"


@pytest.mark.slow
def test_each_pair_run_logs_the_mean_over_all_games_and_the_interval_against_the_baseline(backtest):
    for pair in backtest.pair_runs.values():
        metrics = pair.data.metrics
        children = [r for r in backtest.season_runs if r.data.tags.get(names.TAG_PARENT_RUN) == pair.info.run_id]
        games = [r.data.metrics[names.N_GAMES] for r in children]
        assert metrics[names.N_GAMES] == sum(games)
        weighted = sum(r.data.metrics[names.BRIER] * g for r, g in zip(children, games, strict=True)) / sum(games)
        assert metrics[names.BRIER] == pytest.approx(weighted)
        assert metrics[names.BRIER_VS_BASELINE] == pytest.approx(metrics[names.BRIER] - metrics[names.BASELINE_BRIER])
        assert (
            metrics[names.BRIER_VS_BASELINE_LOW]
            <= metrics[names.BRIER_VS_BASELINE]
            <= metrics[names.BRIER_VS_BASELINE_HIGH]
        )


@pytest.mark.slow
def test_the_report_ranks_the_pairs_says_how_sure_and_shows_the_nested_choice(backtest):
    assert backtest.ranking[names.BRIER].is_monotonic_increasing
    assert list(backtest.ranking.columns[-5:]) == ["2019", "2020", "2021", "status", "run_id"]
    best = backtest.ranking.iloc[0]
    assert "\nhow sure: against the runner-up small with learning rate " in backtest.first
    assert "\nnested: chosen on 2019-2020 alone: small with learning rate " in backtest.first
    assert last_line(backtest.first).startswith(f"best: small with learning rate {best['lr']}, backtest brier ")
    assert last_line(backtest.first).endswith(f"-> pair run {best['run_id']}")
    assert backtest.best["how_sure"] in backtest.first and backtest.best["nested"] in backtest.first
    assert backtest.chart.startswith(b"\x89PNG\r\n\x1a\n")
    assert backtest.report_files == sorted([names.BEST_FILE, names.RANKING_CSV, names.RANKING_MD, names.SEASON_CHART])


@pytest.mark.slow
def test_invoked_again_it_trains_nothing_and_reuses_the_pair_runs(backtest):
    assert "6 train runs, 6 reused, 0 to train" in backtest.again
    assert backtest.client.get_run(backtest.again_id).data.metrics["season_runs_trained"] == 0
    assert "reused pair run" in backtest.again and "logged pair run" not in backtest.again
    assert last_line(backtest.again) == last_line(backtest.first)


@pytest.mark.parametrize(
    "args,said",
    [
        (["--seasons", "2023-2021"], "error: seasons: range '2023-2021' runs backwards; write it 2021-2023"),
        (
            ["--seasons", "2030", "--league", "W"],
            "error: none of the seasons 2030-2030 had a tournament; tournaments in the data: 2003-2023",
        ),
        (["--seasons", "2004", "--league", "W"], "error: season 2004 cannot be backtested"),
        (["--epochs", "1000000000"], "error: epochs=1000000000 would need about "),
        (["--lrs", "0.01,abc"], "error: lrs must be a number, got 'abc'"),
    ],
)
def test_bad_seasons_work_or_grid_stop_in_one_line_before_any_run(args, said, tracking, capsys):
    # In this process: how a step's one-line error becomes exit code 1 is test_startup's.
    with pytest.raises(SystemExit) as exit_:
        backtest_step.main(args)
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.strip().startswith(said) and len(err.strip().splitlines()) == 1
    assert (
        mlflow.MlflowClient(tracking).search_runs(
            [e.experiment_id for e in mlflow.MlflowClient(tracking).search_experiments()]
        )
        == []
    )


@pytest.mark.slow
def test_a_failed_season_run_fails_only_its_pair_and_is_named(tmp_path):
    # lr 1e38 passes every check and diverges (the second Adam step overflows float32).
    from stores import temp_store

    project = sandbox.snapshot(tmp_path / "project")
    with temp_store(tmp_path) as (uri, _):
        command = "mlflow run . -e backtest -P models=small -P lrs=0.01,1e38 -P epochs=1 -P seasons=2021 -P league=W --env-manager local"
        done = run_cli(shlex.split(command), cwd=project)
        assert done.returncode != 0
        assert (
            "error: 1 of 2 season runs failed: small_1e+38_2021; run the backtest again to retry only those"
            in done.stderr
        )
        assert "| small | 1e+38 |" in done.stdout and "FAILED |  |" in done.stdout
        assert last_line(done.stdout).startswith("best: small with learning rate 0.01, backtest brier ")
        pairs = mlflow.MlflowClient(uri).search_runs(
            [mlflow.MlflowClient(uri).get_experiment_by_name("fabric_madness_backtest_small").experiment_id],
            f"tags.{names.TAG_ENTRY_POINT} = 'backtest_pair'",
        )
        assert [run.info.run_name for run in pairs] == ["small_0.01"]
