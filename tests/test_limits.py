"""madness.limits: work that cannot fit in memory is refused before it starts, in one line naming the limit."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli, runs_of
from madness import limits
from madness.errors import UserError
from steps import main as sweep_step

MACHINE = 24 * limits.GIB  # this project's machines; the limits below follow from it


def refusal(**work) -> str:
    with pytest.raises(UserError) as err:
        limits.check_work(**{"epochs": 100, "seeds": 1, "batch_size": 32, "jobs": 1, **work}, memory=MACHINE)
    return str(err.value)


def test_the_defaults_and_the_articles_sweep_fit():
    limits.check_work(epochs=100, seeds=1, batch_size=32, jobs=2, memory=MACHINE)


def test_too_many_jobs_are_refused_naming_the_limit():
    assert refusal(jobs=1000) == (
        "jobs=1000 would need about 1,500.0 GiB (1.5 GiB a training process); "
        "at most 8 fit in this machine's share (12.0 GiB, half of its 24.0 GiB)"
    )


def test_a_billion_epochs_are_refused_naming_the_limit():
    assert refusal(epochs=1_000_000_000).startswith(
        "epochs=1000000000 would need about 1,072.9 GiB for its loss curves (1152 bytes an epoch); "
        "at most 9,757,582 epochs fit in 10.5 GiB a job beside its process"
    )


def test_the_epoch_limit_itself_fits_and_one_more_does_not():
    most = 9_757_582  # (10.5 GiB - 32 MiB) // 1152 bytes
    limits.check_work(epochs=most, seeds=1, batch_size=32, memory=MACHINE)
    assert refusal(epochs=most + 1).startswith(f"epochs={most + 1} ")


def test_a_million_seeds_are_refused_naming_the_limit():
    assert refusal(seeds=1_000_000).startswith(
        "seeds=1000000 would need about 31,261.9 GiB for its networks (32 MiB each at epochs=100); at most 335 fit"
    )


def test_the_limits_shrink_with_the_jobs_sharing_the_machine():
    limits.check_work(epochs=100, seeds=300, batch_size=32, jobs=1, memory=MACHINE)
    assert refusal(seeds=300, jobs=2).startswith("seeds=300 would need")


def test_a_batch_beyond_memory_is_refused_naming_the_limit():
    assert refusal(batch_size=10**12).startswith("batch_size=1000000000000 would need about ")
    assert "at most 2,926,866 rows fit" in refusal(batch_size=10**12)


def test_the_machine_memory_is_read():
    assert limits.machine_memory() > limits.GIB


# --- the steps refuse before any run starts, in their own processes ---


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


@pytest.mark.timed
def test_train_with_a_billion_epochs_fails_in_seconds_with_one_line(tracking):
    started = time.monotonic()
    done = run_cli([sys.executable, "-m", "steps.train", "--epochs", "1000000000"], timeout=120)
    assert time.monotonic() - started < 30, "refused before TensorFlow loads or data are read"
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "epochs=1000000000 would need about" in done.stderr and "epochs fit in" in done.stderr
    assert runs_of() == []


@pytest.mark.slow
@pytest.mark.timed
def test_mlflow_run_train_with_a_billion_epochs_ends_its_run_failed_in_seconds(tracking):
    started = time.monotonic()
    done = run_cli(
        [str(Path(sys.executable).parent / "mlflow"), "run", str(ROOT), "-e", "train", "--env-manager", "local"]
        + ["-P", "epochs=1000000000"],
        timeout=300,
    )
    assert time.monotonic() - started < 60
    assert done.returncode != 0
    assert "epochs=1000000000 would need about" in done.stderr
    (run,) = runs_of()
    assert run.info.status == "FAILED"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--jobs", "1000"], "jobs=1000 would need about"),
        (["--seeds", "1000000"], "seeds=1000000 would need about"),
        (["--lrs", "0.01,abc"], "lrs must be a number, got 'abc'"),
        (["--models", "small,,medium"], "models has an empty item in 'small,,medium'"),
    ],
)
def test_a_sweep_beyond_the_limits_or_with_a_bad_grid_value_fails_before_any_run(tracking, args, words, capsys):
    # In this process: how a step's one-line error becomes exit code 1 is test_startup's.
    with pytest.raises(SystemExit) as exit_:
        sweep_step.main(["--prefix", "limits", *args])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert words in last_line(err)
    assert runs_of() == []
