"""The evaluate and predict entry points, in-process, on one tiny model trained on the synthetic women's league."""

from __future__ import annotations

import io
import re
import sys
from contextlib import redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pandas as pd
import pytest

from conftest import subprocess_env
from madness import kaggle, names, synthetic
from madness.errors import UserError
from readonly import run_on_small_disk
from steps import evaluate, predict, train
from stores import all_artifacts, last_line, run_ids, temp_store

NO_RUN = "0123456789abcdef0123456789abcdef"

pytestmark = pytest.mark.usefixtures("synthetic_league_once")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with temp_store(tmp_path_factory.mktemp("eval-store")) as (uri, experiment_id):
        yield SimpleNamespace(uri=uri, experiment_id=experiment_id, client=mlflow.MlflowClient(tracking_uri=uri))


def run_step(store, step, args: list[str], printed: io.StringIO | None = None):
    """Run a step's main in this process, its output into `printed`; return its new run."""
    before = run_ids(store.experiment_id)
    with redirect_stdout(printed or io.StringIO()):
        step.main(args)
    (new,) = run_ids(store.experiment_id) - before
    return store.client.get_run(new)


@pytest.fixture(scope="module")
def model(store):
    """A 2-epoch small network on the synthetic women's league (features built by the train step itself)."""
    run = run_step(store, train, ["--model", "small", "--epochs", "2", "--lr", "0.01", "--league", "W"])
    return SimpleNamespace(run=run, uri=f"runs:/{run.info.run_id}/{names.MODEL_DIR}")


def last_stderr_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1] if lines else ""


# --- evaluate ---


@pytest.fixture(scope="module")
def evaluated(store, model):
    return run_step(store, evaluate, ["--model_uri", model.uri, "--league", "W"])


def test_evaluate_logs_the_scores_and_the_baseline(evaluated):
    assert evaluated.info.status == "FINISHED"
    for key in (names.BRIER, names.LOG_LOSS, names.ACCURACY, names.BASELINE_BRIER):
        assert 0 < evaluated.data.metrics[key] < 1, key


def test_evaluate_scores_the_same_games_as_the_train_steps_test_split(evaluated, model):
    # Both score seasons 2022-2023 of the same synthetic data with the same network.
    assert evaluated.data.metrics[names.N_GAMES] == model.run.data.metrics[names.N_GAMES]
    assert (
        evaluated.data.metrics[names.BRIER] == model.run.data.metrics[names.BRIER]
    )  # one Brier per model, bit for bit


def test_evaluate_logs_the_calibration_plot(store, evaluated):
    assert names.CALIBRATION_PLOT in all_artifacts(store.client, evaluated.info.run_id)


def test_evaluate_tags_the_evaluated_run(evaluated, model):
    assert evaluated.data.tags[names.TAG_EVALUATED] == model.run.info.run_id
    assert evaluated.data.tags[names.TAG_SYNTHETIC] == "true"


def test_evaluate_on_the_models_own_data_says_nothing_and_tags_it(evaluated):
    assert evaluated.data.tags[names.TAG_DATA_MATCHES_MODEL] == "true"


def test_evaluate_on_other_data_than_the_models_says_so_in_one_line_and_tags_it(store, model, capsys):
    # the model learnt from the women's synthetic league; both leagues are other data
    run = run_step(store, evaluate, ["--model_uri", model.uri, "--league", "both"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"note: the data read (data=synthetic, league=both, digest {run.data.tags[names.TAG_DATA_DIGEST][:12]}) are not "
        f"those model run {model.run.info.run_id} was trained on (the synthetic league, digest "
        f"{model.run.data.tags[names.TAG_DATA_DIGEST][:12]})"
    ]
    assert run.info.status == "FINISHED" and run.data.tags[names.TAG_DATA_MATCHES_MODEL] == "false"


def test_evaluate_with_a_missing_model_fails_with_one_line(store, capsys):
    before = run_ids(store.experiment_id)
    uri = f"runs:/{NO_RUN}/{names.MODEL_DIR}"
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["--model_uri", uri, "--league", "W"])
    assert exit_.value.code != 0
    line = last_stderr_line(capsys)
    assert line.startswith("error: cannot load model") and uri in line
    assert run_ids(store.experiment_id) == before  # nothing started


class Half(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [0.5] * len(model_input)


def test_evaluate_with_a_model_without_signature_fails_with_one_line(store, capsys):
    with mlflow.start_run(experiment_id=store.experiment_id) as logged:
        mlflow.pyfunc.log_model(name=names.MODEL_DIR, python_model=Half(), pip_requirements=["mlflow"])
    before = run_ids(store.experiment_id)
    uri = f"runs:/{logged.info.run_id}/{names.MODEL_DIR}"
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["--model_uri", uri, "--league", "W"])
    assert exit_.value.code == 1
    assert (
        last_stderr_line(capsys)
        == f"error: cannot use model {uri!r}: it has no input signature; give a model the train step logged"
    )
    assert run_ids(store.experiment_id) == before  # nothing started


def test_evaluate_on_seasons_without_games_names_the_seasons_the_data_has():
    games = pd.DataFrame({names.SEASON: [2015, 2019, 2021]})
    values = {"baseline_from": 2003, "first_season": 2022, "last_season": 2023}
    with pytest.raises(
        UserError, match=r"no tournament games in seasons 2022-2023; tournaments in the data: 2015-2021$"
    ):
        evaluate.scored_and_baseline_rows(games, values)


# --- predict ---


def seeded_teams(folder: Path, season: int) -> dict[str, int]:
    """Seeded teams per league of the synthetic data (seed 42), counted from its seed files."""
    synthetic.write_league(folder, 42)
    counts = {}
    for league in names.LEAGUES:
        seeds = pd.read_csv(folder / kaggle.file_name(league, names.TOURNEY_SEEDS))
        counts[league] = seeds.loc[seeds[names.SEASON] == season, names.TEAM_ID].nunique()
    return counts


@pytest.fixture(scope="module")
def predicted(store, model, tmp_path_factory):
    output = tmp_path_factory.mktemp("out") / "sub" / "submission.csv"
    printed = io.StringIO()
    run = run_step(
        store,
        predict,
        ["--model_uri", model.uri, "--season", "2024", "--league", "both", "--output", str(output)],
        printed,
    )
    return SimpleNamespace(
        run=run,
        output=output,
        frame=pd.read_csv(output, dtype={names.SUBMISSION_ID: str}),
        printed=printed.getvalue().strip(),
    )


def test_predict_writes_kaggles_header(predicted):
    assert predicted.run.info.status == "FINISHED"
    assert predicted.output.read_text().splitlines()[0] == "ID,Pred"


def test_predict_writes_one_row_per_pair_of_seeded_teams_per_league(predicted, tmp_path):
    counts = seeded_teams(tmp_path, 2024)
    assert all(count == 68 for count in counts.values())
    assert len(predicted.frame) == sum(k * (k - 1) // 2 for k in counts.values())
    assert predicted.frame[names.SUBMISSION_ID].is_unique


def test_predict_ids_are_season_then_lower_team_then_higher(predicted):
    for id_ in predicted.frame[names.SUBMISSION_ID]:
        match = re.fullmatch(r"2024_(\d{4})_(\d{4})", id_)
        assert match, id_
        assert int(match[1]) < int(match[2]), id_


def test_predict_gives_probabilities_strictly_between_0_and_1(predicted):
    pred = predicted.frame[names.SUBMISSION_PRED]
    assert pred.notna().all() and ((pred > 0) & (pred < 1)).all()


def test_predict_logs_the_same_file_as_artifact(store, predicted, tmp_path):
    assert names.SUBMISSION_FILE in all_artifacts(store.client, predicted.run.info.run_id)
    local = store.client.download_artifacts(predicted.run.info.run_id, names.SUBMISSION_FILE, str(tmp_path))
    assert Path(local).read_bytes() == predicted.output.read_bytes()


def test_predict_tags_the_model_run(predicted, model):
    assert predicted.run.data.tags[names.TAG_EVALUATED] == model.run.info.run_id


def test_predict_says_when_it_replaces_a_file(predicted, model, tmp_path):
    # the fixture's predict wrote where no file was; this one writes over a file that is there
    assert predicted.printed.endswith(f"written to {predicted.output}")
    output = tmp_path / "submission.csv"
    output.write_text("ID,Pred\n")
    out = io.StringIO()
    with redirect_stdout(out):
        predict.main(["--model_uri", model.uri, "--league", "W", "--output", str(output)])
    assert out.getvalue().strip().endswith(f"written to {output} (it replaced the file that was there)")


def test_predict_for_a_season_without_seeds_fails_naming_it_and_writes_nothing(store, model, tmp_path, capsys):
    output = tmp_path / "submission.csv"
    before = run_ids(store.experiment_id)
    with pytest.raises(SystemExit) as exit_:
        predict.main(["--model_uri", model.uri, "--season", "2030", "--league", "W", "--output", str(output)])
    assert exit_.value.code != 0
    line = last_stderr_line(capsys)
    assert line.startswith("error:") and "2030" in line, line
    assert not output.exists() and not list(tmp_path.glob("*submission*"))
    (failed,) = run_ids(store.experiment_id) - before
    assert store.client.get_run(failed).info.status == "FAILED"


def fail_launched_predict(store, monkeypatch, output: Path):
    """Predict into `output` under a run created beforehand, as `mlflow run` launches it (MLFLOW_RUN_ID);
    a model that does not exist: the output is checked before any model loads."""
    launched = store.client.create_run(store.experiment_id).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", launched)
    with pytest.raises(SystemExit) as exit_:
        predict.main(["--model_uri", f"runs:/{NO_RUN}/{names.MODEL_DIR}", "--league", "W", "--output", str(output)])
    assert exit_.value.code == 1
    return store.client.get_run(launched)


def test_predict_onto_a_directory_fails_naming_it(store, tmp_path, monkeypatch, capsys):
    output = tmp_path / "submissions"
    output.mkdir()
    launched = fail_launched_predict(store, monkeypatch, output)
    assert (
        last_stderr_line(capsys)
        == f"error: output {output} is a directory; give the path of a file, e.g. {output / names.SUBMISSION_FILE}"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["submissions"] and not any(output.iterdir())
    assert launched.info.status == "FAILED" and all_artifacts(store.client, launched.info.run_id) == []


def test_predict_under_a_file_fails_naming_it(store, tmp_path, monkeypatch, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder\n")
    output = notes / "2024" / names.SUBMISSION_FILE
    launched = fail_launched_predict(store, monkeypatch, output)
    assert (
        last_stderr_line(capsys)
        == f"error: cannot write output {output}: its folder {output.parent} is missing and cannot be created: {notes} is a file, not a folder"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"] and notes.read_text() == "not a folder\n"
    assert launched.info.status == "FAILED" and all_artifacts(store.client, launched.info.run_id) == []


@pytest.mark.slow
def test_predict_on_a_full_disk_fails_and_logs_no_submission(store, model, tmp_path):
    # The disk fills after the output was checked and the run opened: the staged file fails to
    # write, so nothing is logged and nothing is left, the run ends FAILED.
    folder = tmp_path / "full"
    folder.mkdir()
    output = folder / names.SUBMISSION_FILE
    before = run_ids(store.experiment_id)
    args = [sys.executable, "-m", "steps.predict", "--model_uri", model.uri, "--league", "W", "--output", str(output)]
    env = subprocess_env({"MLFLOW_TRACKING_URI": store.uri, "MLFLOW_EXPERIMENT_ID": store.experiment_id})
    env.pop("MLFLOW_RUN_ID", None)
    result, left = run_on_small_disk(folder, "8k", args, env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]
    assert last_line(result.stderr) == f"error: cannot write output {output}: No space left on device"
    assert left == []  # neither the output nor a .partial file
    (failed,) = run_ids(store.experiment_id) - before
    assert store.client.get_run(failed).info.status == "FAILED"
    assert names.SUBMISSION_FILE not in all_artifacts(store.client, failed)


# --- real women's data ---


@pytest.mark.realdata
def test_predict_2024_on_real_womens_data(store, real_data, tmp_path):
    data = ["--data", str(real_data), "--league", "W"]
    trained = run_step(store, train, ["--model", "small", "--epochs", "1", *data])
    output = tmp_path / "submission.csv"
    run = run_step(
        store,
        predict,
        [
            "--model_uri",
            f"runs:/{trained.info.run_id}/{names.MODEL_DIR}",
            "--season",
            "2024",
            *data,
            "--output",
            str(output),
        ],
    )
    assert run.info.status == "FINISHED" and run.data.tags[names.TAG_SYNTHETIC] == "false"
    frame = pd.read_csv(output, dtype={names.SUBMISSION_ID: str})
    assert len(frame) == 68 * 67 // 2 == 2278
    assert frame[names.SUBMISSION_ID].str.fullmatch(r"2024_3\d{3}_3\d{3}").all()
    assert ((frame[names.SUBMISSION_PRED] > 0) & (frame[names.SUBMISSION_PRED] < 1)).all()
