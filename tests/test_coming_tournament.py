"""The README's "model for the coming tournament": its two commands, run as shown (in a snapshot of the
project beside the real data, as the repository sits beside ../shared), on the real women's data."""

from __future__ import annotations

import re
import shlex
from itertools import combinations
from types import SimpleNamespace

import mlflow
import pandas as pd
import pytest

from conftest import REAL_DATA, ROOT, run_cli
from madness import names
from tools import sandbox

SECTION = "### A model for the coming tournament"
RUN_ID_PLACEHOLDER = "<run id printed above>"


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION) :]
    block = section[section.index("```bash\n") + len("```bash\n") :]
    return [line for line in block[: block.index("```")].splitlines() if line.strip()]


def test_the_section_shows_a_train_command_then_a_predict_command_of_its_run():
    train, predict = readme_commands()
    assert shlex.split(train)[:5] == ["mlflow", "run", ".", "-e", "train"]
    assert shlex.split(predict)[:5] == ["mlflow", "run", ".", "-e", "predict"] and RUN_ID_PLACEHOLDER in predict


@pytest.fixture(scope="module")
def coming(tmp_path_factory):
    from stores import temp_store

    if not (REAL_DATA / "WRegularSeasonCompactResults.csv").is_file():
        pytest.skip(f"real Kaggle data not found at {REAL_DATA}")
    real_data = REAL_DATA
    home = tmp_path_factory.mktemp("coming")
    project = sandbox.snapshot(home / "project")
    # The commands name ../shared/data/mmlm2024, where the data sits beside the repository.
    (home / "shared" / "data").mkdir(parents=True)
    (home / "shared" / "data" / "mmlm2024").symlink_to(real_data)
    train_command, predict_command = readme_commands()
    with temp_store(tmp_path_factory.mktemp("coming-store")) as (uri, _):
        trained = run_cli(shlex.split(train_command), cwd=project)
        assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-3000:]
        run_id = re.search(r"train run (\w+): ", trained.stdout)[1]
        predicted = run_cli(shlex.split(predict_command.replace(RUN_ID_PLACEHOLDER, run_id)), cwd=project)
        assert predicted.returncode == 0, predicted.stdout[-2000:] + predicted.stderr[-3000:]
        client = mlflow.MlflowClient(uri)
        yield SimpleNamespace(
            run=client.get_run(run_id),
            printed=trained.stdout,
            submission=pd.read_csv(project / "outputs" / "submission_2024.csv"),
            data=real_data,
        )


@pytest.mark.slow
def test_the_run_trains_through_2022_and_validates_on_2023_without_test_seasons(coming):
    params = coming.run.data.params
    assert (params["first_season"], params["val_season"], params["test_season"], params["last_season"]) == (
        "2003",
        "2023",
        "2024",
        "2023",
    )
    contexts = {
        tag.value
        for dataset in coming.run.inputs.dataset_inputs
        for tag in dataset.tags
        if tag.key == "mlflow.data.context"
    }
    assert contexts == {names.TRAIN, names.VAL}


@pytest.mark.slow
def test_the_run_is_not_scored_and_says_so(coming):
    metrics = coming.run.data.metrics
    assert names.BEST_EPOCH in metrics and names.BRIER not in metrics and names.BASELINE_BRIER not in metrics
    assert "no test seasons (trained for the coming tournament): not scored" in coming.printed


@pytest.mark.slow
def test_the_submission_pairs_every_2024_seeded_womens_team(coming):
    seeds = pd.read_csv(coming.data / "WNCAATourneySeeds.csv")
    teams = sorted(seeds[seeds["Season"] == 2024]["TeamID"])
    expected = {f"2024_{a}_{b}" for a, b in combinations(teams, 2)}
    assert list(coming.submission.columns) == [names.SUBMISSION_ID, names.SUBMISSION_PRED]
    assert set(coming.submission[names.SUBMISSION_ID]) == expected and len(coming.submission) == len(expected)
    assert coming.submission[names.SUBMISSION_PRED].between(0, 1, inclusive="neither").all()
