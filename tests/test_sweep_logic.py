"""The sweep's and the report's pure helpers: grid, cache rule, thread shares, progress text, runs table."""

from __future__ import annotations

import math
import os

import pandas as pd
import pytest

from madness import names, scoring, sweep
from madness import report as tables
from madness.errors import UserError

# --- grid and split_list ---


def test_grid_is_every_model_with_every_lr_in_the_order_given():
    pairs = sweep.grid("medium,small", "0.1,0.001")
    assert [(p.model, p.lr) for p in pairs] == [
        ("medium", "0.1"),
        ("medium", "0.001"),
        ("small", "0.1"),
        ("small", "0.001"),
    ]
    assert [p.name for p in pairs] == ["medium_0.1", "medium_0.001", "small_0.1", "small_0.001"]


def test_grid_names_each_learning_rate_in_one_spelling():
    assert [p.lr for p in sweep.grid("small", "0.010, 1e-3, .5, 2")] == ["0.01", "0.001", "0.5", "2"]


@pytest.mark.parametrize("lrs", ["0.01,1e-2", "0.01,.01", "1e-2,0.010"])
def test_one_learning_rate_in_two_spellings_is_refused_naming_both(lrs):
    first, second = lrs.split(",")
    with pytest.raises(UserError, match=rf"^lrs lists 0.01 twice \(as '{first}' and '{second}'\)"):
        sweep.grid("small", lrs)


@pytest.mark.parametrize(
    ("text", "spelling"),
    [
        ("1e-2", "0.01"),
        ("0.0100", "0.01"),
        ("010", "10"),
        (" 3 ", "3"),
        ("abc", "abc"),
        ("nan", "nan"),
        ("inf", "inf"),
        ("", ""),
    ],
)
def test_canonical_spells_numbers_one_way_and_leaves_the_rest(text, spelling):
    assert sweep.canonical(text) == spelling


@pytest.mark.parametrize(
    ("models", "lrs", "line"),
    [
        ("small", "0.01,abc", "lrs must be a number, got 'abc'"),
        ("small", "nan", "lrs must be a finite number, got 'nan'"),
        ("small", "0.01,inf", "lrs must be a finite number, got 'inf'"),
        ("small", "-0.01", "lrs must be > 0, got -0.01"),
        ("small", "0", "lrs must be > 0, got 0.0"),
        ("small,huge", "0.01", "unknown model 'huge'; accepted: small, medium, large"),
        (
            "small,,medium",
            "0.01",
            "models has an empty item in 'small,,medium'; give values separated by single commas",
        ),
        ("small", "0.01,", "lrs has an empty item in '0.01,'; give values separated by single commas"),
    ],
)
def test_every_value_of_the_grid_is_checked_before_any_run(models, lrs, line):
    with pytest.raises(UserError) as err:
        sweep.grid(models, lrs)
    assert str(err.value) == line


def test_split_list_strips_spaces():
    assert sweep.split_list("models", " small , medium") == ["small", "medium"]


@pytest.mark.parametrize("text", ["", " ", ",", " , ,"])
def test_split_list_refuses_an_empty_list(text):
    with pytest.raises(UserError, match=r"^models must be a comma-separated list"):
        sweep.split_list("models", text)


def test_split_list_refuses_a_repeated_value():
    with pytest.raises(UserError, match=r"^lrs lists 0.1 twice in '0.1,0.01, 0.1'; give each value once$"):
        sweep.split_list("lrs", "0.1,0.01, 0.1")


@pytest.mark.parametrize(
    ("models", "lrs", "which"),
    [("", "0.1", "models"), ("small", "", "lrs"), ("small,small", "0.1", "models"), ("small", "0.1,0.1", "lrs")],
)
def test_grid_names_the_bad_list(models, lrs, which):
    with pytest.raises(UserError, match=rf"^{which} "):
        sweep.grid(models, lrs)


# --- is_reusable: the cache rule ---

PARAMS = {
    "model": "small",
    "lr": "0.01",
    "epochs": "2",
    "batch_size": "32",
    "threads": "2",
    "features_uri": "runs:/abc/features",
    "data": "synthetic",
    "league": "both",
    "first_season": "2003",
    "val_season": "2019",
    "test_season": "2022",
    "last_season": "2023",
    "seed": "42",
}
TAGS = {names.TAG_COMMIT: "c0ffee", names.TAG_STATE: "5ta7e", names.TAG_DATA_DIGEST: "d1g35t"}


def reusable(status="FINISHED", run_params=None, run_tags=None, want_params=None, want_tags=None) -> bool:
    return sweep.is_reusable(
        status,
        PARAMS if run_params is None else run_params,
        {**TAGS, "other": "x"} if run_tags is None else run_tags,
        dict(PARAMS) if want_params is None else want_params,
        dict(TAGS) if want_tags is None else want_tags,
    )


def test_a_finished_run_with_the_same_params_and_tags_is_reused():
    assert reusable()


@pytest.mark.parametrize("status", ["RUNNING", "FAILED", "KILLED", "SCHEDULED"])
def test_only_a_finished_run_is_reused(status):
    assert not reusable(status=status)


@pytest.mark.parametrize("key", sorted(set(PARAMS) - {"threads", "features_uri"}))
def test_any_param_difference_prevents_reuse(key):
    assert not reusable(want_params={**PARAMS, key: "1" + PARAMS[key]})


@pytest.mark.parametrize(
    ("key", "spelling"), [("lr", "1e-2"), ("lr", ".01"), ("lr", "0.010"), ("epochs", "02"), ("seed", "042")]
)
def test_numeric_params_are_compared_by_value(key, spelling):
    assert reusable(want_params={**PARAMS, key: spelling})
    assert reusable(run_params={**PARAMS, key: spelling})


def test_text_params_are_compared_as_text():
    assert not reusable(want_params={**PARAMS, "data": "Synthetic"})


def test_a_param_on_one_side_only_prevents_reuse():
    assert not reusable(want_params={**PARAMS, "dropout": "0.5"})
    assert not reusable(run_params={**PARAMS, "dropout": "0.5"})
    assert not reusable(run_params={k: v for k, v in PARAMS.items() if k != "epochs"})


def test_threads_and_features_uri_are_ignored():
    assert reusable(want_params={**PARAMS, "threads": "1", "features_uri": "runs:/another/features"})
    assert reusable(run_params={k: v for k, v in PARAMS.items() if k not in ("threads", "features_uri")})


@pytest.mark.parametrize("tag", sorted(TAGS))
def test_any_tag_difference_prevents_reuse(tag):
    assert not reusable(want_tags={**TAGS, tag: TAGS[tag] + "0"})


@pytest.mark.parametrize("tag", sorted(TAGS))
def test_a_run_without_the_tag_is_not_reused(tag):
    assert not reusable(run_tags={k: v for k, v in TAGS.items() if k != tag})


@pytest.mark.parametrize("tag", sorted(TAGS))
def test_an_unknown_wanted_tag_prevents_reuse_even_when_the_run_lacks_it_too(tag):
    # Outside git (no commit) or without a data digest, nothing proves the runs are alike.
    assert not reusable(run_tags={k: v for k, v in TAGS.items() if k != tag}, want_tags={**TAGS, tag: None})
    assert not reusable(want_tags={**TAGS, tag: None})


def test_tags_not_wanted_do_not_matter():
    assert reusable(run_tags={**TAGS, names.TAG_RUN_NAME: "whatever", "sweep_run_id": "old"})


# --- threads, eta, progress ---


@pytest.mark.parametrize(
    ("jobs", "cores", "threads"), [(1, 2, 2), (2, 2, 1), (3, 2, 1), (2, 8, 4), (3, 8, 2), (1, 1, 1), (0, 4, 4)]
)
def test_threads_per_job_is_a_fair_share_of_at_least_one(jobs, cores, threads):
    assert sweep.threads_per_job(jobs, cores) == threads


def test_threads_per_job_defaults_to_this_machines_cores():
    assert sweep.threads_per_job(1) == (os.cpu_count() or 1)
    assert sweep.threads_per_job(10_000) == 1


def test_eta_is_unknown_before_a_pair_finishes():
    assert sweep.eta_seconds([], 4, 1) is None


@pytest.mark.parametrize(
    ("durations", "remaining", "jobs", "eta"),
    [([10.0, 20.0], 3, 1, 45.0), ([10.0, 20.0], 3, 2, 22.5), ([30.0], 0, 1, 0.0), ([30.0], 2, 0, 60.0)],
)
def test_eta_is_mean_duration_times_remaining_over_jobs(durations, remaining, jobs, eta):
    assert sweep.eta_seconds(durations, remaining, jobs) == pytest.approx(eta)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "?"), (0, "0s"), (0.4, "0s"), (59.4, "59s"), (59.6, "1m00s"), (125, "2m05s"), (3600, "60m00s")],
)
def test_format_seconds(seconds, text):
    assert sweep.format_seconds(seconds) == text


def test_progress_line_names_the_running_pairs_and_the_time_left():
    assert (
        sweep.progress_line(1, 4, ["small_0.1", "medium_0.1"], 125)
        == "[1/4 done] running: small_0.1, medium_0.1; time left ~2m05s"
    )


def test_progress_line_before_any_estimate_and_with_nothing_running():
    assert sweep.progress_line(0, 9, [], None) == "[0/9 done] running: none; time left ~?"


# --- the runs table ---


def row(model, lr, brier, status="FINISHED", seeds=1, members=None, **extra):
    """What steps.report.table_rows gives for a run; `members`: (mean, sd) of a run of several seeds."""
    metrics = {} if brier is None else {names.BRIER: brier}
    if members is not None:
        metrics.update({names.BRIER_MEAN: members[0], names.BRIER_SD: members[1]})
    base = {
        "model": model,
        "lr": lr,
        **tables.pair_scores(metrics, seeds),
        names.LOG_LOSS: None if brier is None else brier * 3,
        names.ACCURACY: None if brier is None else 0.7,
        names.BASELINE_BRIER: 0.23,
        names.BEST_EPOCH: None if brier is None else 4.0,
        "duration_s": 12.34,
        "status": status,
        "reused": False,
        "run_id": f"id_{model}_{lr}",
    }
    return {**base, **extra}


def never_started(model, lr):
    # What steps.report.table_rows gives for a pair whose run could not even be created.
    return {"model": model, "lr": lr, "status": "FAILED", "reused": False, "run_id": ""}


def test_runs_table_has_the_report_columns():
    table = tables.runs_table([row("small", "0.1", 0.21)])
    assert list(table.columns) == [
        "model",
        "lr",
        "seeds",
        "brier_mean",
        "brier_sd",
        "brier",
        "log_loss",
        "accuracy",
        "baseline_brier",
        "best_epoch",
        "duration_s",
        "status",
        "reused",
        "run_id",
    ]


def test_runs_table_is_best_brier_first_and_failed_pairs_last():
    rows = [
        row("small", "abc", None, status="FAILED"),
        row("medium", "0.1", 0.30),
        never_started("large", "0.01"),
        row("small", "0.01", 0.20),
        row("large", "0.1", 0.25),
    ]
    table = tables.runs_table(rows)
    assert list(table["run_id"][:3]) == ["id_small_0.01", "id_large_0.1", "id_medium_0.1"]
    assert sorted(table["model"][3:] + "_" + table["lr"][3:]) == ["large_0.01", "small_abc"]
    assert table[names.BRIER][3:].isna().all()
    assert list(table.index) == [0, 1, 2, 3, 4]


def test_runs_table_breaks_ties_by_model_then_lr():
    table = tables.runs_table([row("small", "0.1", 0.2), row("medium", "0.1", 0.2), row("medium", "0.01", 0.2)])
    assert list(table["model"] + "_" + table["lr"]) == ["medium_0.01", "medium_0.1", "small_0.1"]


def test_runs_table_of_only_failed_pairs():
    table = tables.runs_table([never_started("small", "0.1"), row("medium", "x", None, status="FAILED")])
    assert len(table) == 2 and table[names.BRIER].isna().all()


def test_markdown_formats_numbers_and_leaves_missing_cells_empty():
    table = tables.runs_table([row("small", "0.01", 0.123456), never_started("small", "abc")])
    lines = tables.markdown(table).splitlines()
    assert lines[0] == "| " + " | ".join(tables.TABLE_COLUMNS) + " |"
    assert lines[1] == "| " + " | ".join(["---"] * len(tables.TABLE_COLUMNS)) + " |"
    assert (
        lines[2]
        == "| small | 0.01 | 1 | 0.1235 |  | 0.1235 | 0.3704 | 0.7000 | 0.2300 | 4 | 12.3 | FINISHED | False | id_small_0.01 |"
    )
    assert lines[3] == "| small | abc |  |  |  |  |  |  |  |  |  | FAILED | False |  |"
    assert len(lines) == 4 and tables.markdown(table).endswith("\n")


def test_markdown_of_an_empty_table_is_its_header():
    assert tables.markdown(tables.runs_table([])).splitlines()[2:] == []


def test_the_best_ranked_row_is_the_lowest_brier():
    best = tables.ranked_row(
        tables.runs_table([row("small", "0.1", 0.3), row("medium", "0.01", 0.2), never_started("large", "0.1")])
    )
    assert best["model"] == "medium" and best["lr"] == "0.01" and best[names.BRIER] == pytest.approx(0.2)
    assert best["run_id"] == "id_medium_0.01"


def test_an_incomplete_run_is_never_best_even_with_the_lowest_brier():
    best = tables.ranked_row(
        tables.runs_table([row("small", "0.1", 0.1, status=tables.INCOMPLETE), row("medium", "0.01", 0.2)])
    )
    assert best["run_id"] == "id_medium_0.01"


def test_no_row_is_ranked_when_nothing_finished():
    assert (
        tables.ranked_row(
            tables.runs_table([never_started("small", "0.1"), row("small", "abc", None, status="FAILED")])
        )
        is None
    )
    assert tables.ranked_row(tables.runs_table([])) is None


def test_a_single_seed_runs_mean_is_its_brier_and_it_has_no_spread():
    scores = tables.pair_scores({names.BRIER: 0.2}, 1)
    assert scores[tables.SEEDS] == 1 and scores[names.BRIER_MEAN] == 0.2 and math.isnan(scores[names.BRIER_SD])


def test_a_run_of_several_seeds_keeps_its_members_mean_and_spread_beside_its_models_brier():
    scores = tables.pair_scores({names.BRIER: 0.19, names.BRIER_MEAN: 0.2, names.BRIER_SD: 0.01}, 3)
    assert scores == {tables.SEEDS: 3, names.BRIER_MEAN: 0.2, names.BRIER_SD: 0.01, names.BRIER: 0.19}


def test_runs_are_ranked_by_their_members_mean_brier_not_by_their_averaged_models():
    # The averaged model of `small` scores better, but its seeds, on average, do worse.
    table = tables.runs_table(
        [
            row("small", "0.01", 0.18, seeds=3, members=(0.21, 0.02)),
            row("medium", "0.01", 0.19, seeds=3, members=(0.2, 0.001)),
        ]
    )
    assert tables.ranked_row(table)["model"] == "medium"
    assert tables.ranked_row(table, 1)["model"] == "small"


def test_the_brier_text_of_one_seed_is_as_before_and_of_several_names_mean_spread_and_count():
    assert tables.brier_text(row("small", "0.01", 0.1656)) == "brier 0.1656"
    assert (
        tables.brier_text(row("small", "0.01", 0.16, seeds=5, members=(0.1656, 0.0043)))
        == "mean brier 0.1656 +- 0.0043 over 5 seeds"
    )


def test_how_sure_of_several_seeds_says_the_averaged_models_are_compared():
    best = row("small", "0.001", 0.16, seeds=3, members=(0.1656, 0.002))
    runner = row("medium", "0.01", 0.17, seeds=3, members=(0.1678, 0.003))
    said = tables.comparison_text(best, runner, scoring.Interval(-0.0022, -0.012, 0.009), 134)
    assert said.startswith(
        "against the runner-up medium with learning rate 0.01 (mean brier 0.1678 +- 0.0030 over 3 seeds): "
        "the averaged models' difference -0.0022, 95% interval [-0.0120, +0.0090]"
    )


def test_the_runner_up_is_the_second_lowest_whole_finished_brier():
    table = tables.runs_table(
        [
            row("small", "0.1", 0.3),
            row("medium", "0.01", 0.2),
            row("large", "0.01", 0.1, status=tables.INCOMPLETE),
            row("large", "0.1", 0.25),
        ]
    )
    assert tables.ranked_row(table, 1)["run_id"] == "id_large_0.1"
    assert tables.ranked_row(tables.runs_table([row("small", "0.1", 0.3)]), 1) is None


def predictions(team_1_wins: list[float], season: int = 2022) -> pd.DataFrame:
    """A predictions.csv of games team 1 won, given its predicted chance in each: both rows of each game."""
    rows = []
    for game, p in enumerate(team_1_wins):
        rows += [(season, 1, 2 + game, 1, p), (season, 2 + game, 1, 0, 1 - p)]
    return pd.DataFrame(rows, columns=[names.SEASON, names.T1_TEAM, names.T2_TEAM, names.TARGET, names.PREDICTION])


def test_predictions_of_the_same_rows_are_the_same_games_whatever_they_predict():
    assert tables.same_games(predictions([0.6]), predictions([0.9]))
    assert not tables.same_games(predictions([0.6]), predictions([0.6], season=2023))
    assert not tables.same_games(predictions([0.6]), predictions([0.6]).iloc[:1])


def test_how_sure_says_a_winner_is_distinguishable_only_when_the_interval_excludes_zero():
    best, runner = row("small", "0.001", 0.1656), row("medium", "0.01", 0.1678)
    clear = tables.comparison_text(best, runner, scoring.Interval(-0.0022, -0.004, -0.001), 134)
    noise = tables.comparison_text(best, runner, scoring.Interval(-0.0022, -0.012, 0.009), 134)
    assert clear == (
        "against the runner-up medium with learning rate 0.01 (brier 0.1678): difference -0.0022, "
        "95% interval [-0.0040, -0.0010] over 134 games resampled: the best is distinguishable from the runner-up"
    )
    assert noise.endswith("not distinguishable from the runner-up: on these games the ranking of the two is noise")


def test_how_sure_tells_a_clearly_better_best_from_the_runner_up():
    best, runner = row("small", "0.001", 0.01), row("medium", "0.001", 0.2)
    text = tables.how_sure(best, runner, predictions([0.9] * 40), predictions([0.55] * 40))
    assert text.startswith("against the runner-up medium with learning rate 0.001 (brier 0.2000): difference -0.1925")
    assert text.endswith("over 40 games resampled: the best is distinguishable from the runner-up")


def test_how_sure_refuses_pairs_scored_on_different_games():
    text = tables.how_sure(
        row("small", "0.1", 0.1), row("medium", "0.1", 0.2), predictions([0.8]), predictions([0.8], 2023)
    )
    assert text == "not compared with the runner-up: the two were scored on different games"


def test_how_sure_without_a_runner_up():
    assert tables.how_sure(row("small", "0.1", 0.1), None, predictions([0.8]), None) == tables.NO_RUNNER_UP


def test_chart_frame_keeps_scored_rows_with_a_numeric_lr():
    table = tables.runs_table(
        [
            row("small", "0.1", 0.3),
            row("small", "1e-3", 0.2),
            row("small", "abc", None, status="FAILED"),
            row("medium", "fast", 0.25),
            never_started("large", "0.01"),
        ]
    )
    frame = tables.chart_frame(table)
    assert sorted(zip(frame["model"], frame["lr"], strict=True)) == [("small", 0.001), ("small", 0.1)]
    assert pd.api.types.is_float_dtype(frame["lr"])
    assert not frame[names.BRIER].isna().any()
    assert table["lr"].tolist()[:2] == ["1e-3", "fast"]  # the table itself is left as it was


def test_chart_frame_of_a_table_without_scores_is_empty():
    frame = tables.chart_frame(tables.runs_table([never_started("small", "0.1")]))
    assert frame.empty and math.isnan(tables.runs_table([never_started("small", "0.1")])[names.BRIER][0])


# --- the report's figures digest (madness.report.figures_digest) ---


def figure_inputs():
    chart = pd.DataFrame(
        {
            "model": ["small", "small"],
            "lr": [0.01, 0.1],
            names.BRIER_MEAN: [0.2, 0.1 + 0.2],
            names.BRIER_SD: [0.01, math.nan],
        }
    )
    grid = [{"model": "small", "lr": "0.01", "run_id": "a", "curves": [[0.3, 0.2], [0.31, 0.25]]}]
    return chart, grid, ["code", "matplotlib 3.9"]


def test_equal_figure_inputs_have_equal_digests():
    assert tables.figures_digest(*figure_inputs()) == tables.figures_digest(*figure_inputs())


@pytest.mark.parametrize("change", ["brier", "spread", "curve", "run", "code"])
def test_any_change_to_what_the_figures_show_or_how_they_are_drawn_changes_the_digest(change):
    chart, grid, drawn_by = figure_inputs()
    before = tables.figures_digest(chart, grid, drawn_by)
    if change == "brier":
        chart.loc[1, names.BRIER_MEAN] = 0.3  # 0.1 + 0.2 is not 0.3: every bit counts
    elif change == "spread":
        chart.loc[1, names.BRIER_SD] = 0.02
    elif change == "curve":
        grid[0]["curves"][1].append(0.24)
    elif change == "run":
        grid[0]["run_id"] = "b"
    else:
        drawn_by[0] = "other code"
    assert tables.figures_digest(chart, grid, drawn_by) != before
