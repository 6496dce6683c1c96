"""Report: compare a sweep's runs, chart Brier against learning rate, filter, pick the best.

Its params are PARAMS below (and MLproject); what it logs, under `report/` of the sweep run (and of
this run, when run on its own), is the README's table "What each run records"; `register`
adds registered models and aliases (see register).

    mlflow run . -e report -P sweep_run_id=<sweep run id> -P filter="metrics.brier < 0.22" --env-manager local
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

from madness import names, plots
from madness import report as tables
from madness.cli import Param, boolean, parse
from madness.errors import UserError, first_line
from madness.names import Status
from steps import _lifecycle
from steps._coordination import Liveness, end_orphans
from steps._entry import entry_point, run_as_script, start_run
from steps._never_started import project_experiments
from steps._stored import png_whole, train_run_problem

DEFAULT_FILTER = "metrics.brier < 0.25"
CHAMPION = "champion"
# Run ids in one search's IN list: MLflow sets no limit on the list, but keeps each query short.
IDS_PER_SEARCH = 100
PARAMS = (
    Param("sweep_run_id", "string", "", "the sweep run to report (empty: the latest sweep)"),
    Param("filter", "string", DEFAULT_FILTER, "MLflow search filter for the runs to list"),
    Param("register", "string", "false", "register the pairs passing the filter, alias the best 'champion'", boolean),
)


def latest_sweep(client) -> str:
    """Return the latest sweep that finished: one killed or still running may have no pairs.json."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments,
        f"tags.{names.TAG_ENTRY_POINT} = 'main' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise UserError(
            "no finished sweep run in this tracking store; run the sweep first (mlflow run . --env-manager local) "
            "or give sweep_run_id"
        )
    return runs[0].info.run_id


def sweep_pairs(sweep_run_id: str) -> list[dict]:
    """Return the sweep run's pairs.json; raise UserError when the run or the file is not there."""
    try:
        return mlflow.artifacts.load_dict(f"runs:/{sweep_run_id}/{names.PAIRS_FILE}")
    except Exception as err:  # noqa: BLE001 - a missing run or artifact: MLflow raises several types
        raise UserError(f"run {sweep_run_id!r} is not a sweep with {names.PAIRS_FILE}: {first_line(err)}") from None


def runs_of(client, pairs: list[dict]) -> dict:
    """Run id -> run of every pair that started: one search per IDS_PER_SEARCH pairs, not one get_run each."""
    ids = list(dict.fromkeys(p["run_id"] for p in pairs if p["run_id"] is not None))
    experiments = sorted({p["experiment_id"] for p in pairs if p["run_id"] is not None})
    runs = {}
    for start in range(0, len(ids), IDS_PER_SEARCH):
        chunk = ids[start : start + IDS_PER_SEARCH]
        quoted = ", ".join(f"'{run_id}'" for run_id in chunk)
        # At most len(chunk) runs: one page. ViewType.ALL: a deleted run is listed, as get_run gives it.
        found = client.search_runs(
            experiments, f"attributes.run_id IN ({quoted})", run_view_type=ViewType.ALL, max_results=len(chunk)
        )
        runs.update((run.info.run_id, run) for run in found)
    # One not found in its pair's experiment: get_run finds it, or says why not.
    return {run_id: runs[run_id] if run_id in runs else client.get_run(run_id) for run_id in ids}


def table_rows(client, pairs: list[dict]) -> list[dict]:
    """Return the runs table's row of each pair: its scores, duration, status (status_of), whether reused, and its
    `constant` tag; a pair that never started has its status alone."""
    rows = []
    runs = runs_of(client, pairs)
    for pair in pairs:
        _lifecycle.check_stop()  # each pair's files are checked: the longest part of a report
        row = {"model": pair["model"], "lr": pair["lr"]}
        if pair["run_id"] is None:  # never started: no run to read
            rows.append({**row, "status": pair.get("status", Status.FAILED), "reused": False, "run_id": ""})
            continue
        run = runs[pair["run_id"]]
        m = run.data.metrics
        end = run.info.end_time or run.info.start_time
        rows.append(
            {
                **row,
                **tables.pair_scores(m, int(run.data.params.get(tables.SEEDS, "1"))),
                **{k: m.get(k) for k in (names.LOG_LOSS, names.ACCURACY, names.BASELINE_BRIER, names.BEST_EPOCH)},
                "duration_s": round((end - run.info.start_time) / 1000, 1),
                "status": status_of(client, run),
                "reused": pair.get("reused", False),
                "run_id": pair["run_id"],
                "constant": run.data.tags.get(names.TAG_CONSTANT) == "true",  # said, not a column
            }
        )
    return rows


def status_of(client, run) -> str:
    """Return the run's status, or INCOMPLETE for a FINISHED run whose files are gone: it is listed as
    such, never passes the filter, is never best and is never registered."""
    if run.info.status != Status.FINISHED:
        return run.info.status
    problem = train_run_problem(client, run.info.run_id, run)
    if problem is None:
        return run.info.status
    print(
        f"run {run.info.run_id} ({run.info.run_name}) is incomplete: {problem}; rerun the sweep to train it again",
        flush=True,
    )
    return tables.INCOMPLETE


def filtered(pairs: list[dict], filter_string: str, whole: set[str]):
    """Return the sweep's whole runs that pass the user's filter, by MLflow's own search."""
    pairs = [p for p in pairs if p["run_id"] in whole]
    if not pairs:
        return pd.DataFrame(columns=["run_id"])
    ids = ", ".join(f"'{p['run_id']}'" for p in pairs)
    experiments = sorted({p["experiment_id"] for p in pairs})
    return search_filtered(
        filter_string, experiments, f"attributes.run_id IN ({ids})", order_by=[f"metrics.{names.BRIER} ASC"]
    )


def search_filtered(filter_string: str, experiments: list[str], clause: str = "", **kwargs) -> pd.DataFrame:
    """Return mlflow.search_runs of the user's `filter_string` and `clause` together; raise the one-line
    error naming `filter_string` when MLflow refuses it."""
    full = " and ".join(part for part in (filter_string.strip(), clause) if part)
    try:
        return mlflow.search_runs(experiments, filter_string=full, **kwargs)
    except MlflowException as err:
        raise UserError(
            f"bad filter {filter_string!r} ({str(err.message).splitlines()[0]}); use MLflow's search syntax, e.g. {DEFAULT_FILTER}"
        ) from None


def loss_histories(client, pairs: list[dict]) -> list[dict]:
    """Return each pair's cell of the loss grid, in the pairs' order: model, lr, run and its curves by epoch
    (empty when the run logged none, None when it never started)."""
    cells = []
    for pair in pairs:
        _lifecycle.check_stop()
        curves = None
        if pair["run_id"]:
            curves = [
                [m.value for m in sorted(client.get_metric_history(pair["run_id"], key), key=lambda m: m.step)]
                for key in (names.TRAIN_LOSS, names.VAL_LOSS)
            ]
        cells.append({"model": pair["model"], "lr": pair["lr"], "run_id": pair["run_id"], "curves": curves})
    return cells


def loss_grid(cells: list[dict]):
    """Return every pair's loss curves in a grid, a row per model and a column per learning rate; a cell without
    curves says the pair failed, one that never started stays empty."""
    models = list(dict.fromkeys(c["model"] for c in cells))
    lrs = list(dict.fromkeys(c["lr"] for c in cells))
    fig, axes = plots.new_figure(
        len(models), len(lrs), size=(4 * len(lrs), 3 * len(models)), squeeze=False, sharey=True
    )
    for cell in (c for c in cells if c["curves"] is not None):
        ax = axes[models.index(cell["model"])][lrs.index(cell["lr"])]
        train, val = cell["curves"]
        if train and val:
            best = min(range(len(val)), key=val.__getitem__)
            plots.loss_curves(ax, train, val, best, f"{cell['model']}, lr {cell['lr']}")
        else:
            ax.set_title(f"{cell['model']}, lr {cell['lr']}: no curves (failed)")
    fig.tight_layout()
    return fig


FIGURES = (names.BRIER_CHART, names.LOSS_GRID)
# Figures are taken from at most this many earlier reports with the same digest (the latest first).
FIGURE_SOURCES = 3


def drawn_by() -> list[str]:
    """Return digests of the code and the library that draw the figures: a change to either draws them again."""
    return [
        hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest() for module in (plots, sys.modules[__name__])
    ] + [f"matplotlib {importlib.metadata.version('matplotlib')}"]


def earlier_figures(client, experiment: str, digest: str, folder: Path) -> str | None:
    """Copy both figures into `folder` from the latest earlier report in the experiment drawn from the same
    inputs (the digest tag on its run) whose figures are whole PNGs; return that run's id, or None."""
    candidates = client.search_runs(
        [experiment],
        f"tags.`{names.TAG_FIGURES_DIGEST}` = '{digest}'",
        order_by=["attributes.start_time DESC"],
        max_results=FIGURE_SOURCES,
    )
    for run in candidates:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                fetched = [
                    Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=path, dst_path=tmp))
                    for path in (f"{names.REPORT_DIR}/{name}" for name in FIGURES)
                ]
            except Exception:  # noqa: BLE001 - gone or unreadable: MLflow raises several types; draw them instead
                continue
            if all(png_whole(path) for path in fetched):
                for path in fetched:
                    shutil.copyfile(path, folder / path.name)
                return run.info.run_id
    return None


def register(client, sweep, pairs: list[dict], table, passing: set[str]) -> dict[str, str]:
    """Register the pairs that pass the filter: one registered model per architecture, one version
    per learning rate (reused when the run was registered before), its best version aliased
    `champion`; and every one of them in the registered model named after the sweep's prefix,
    whose `champion` is the best over all architectures (the one model to serve). A model that gets
    no champion this time loses one whose files are gone (drop_broken_champion)."""
    champions = {}
    rows = tables.ranked(table[table["run_id"].isin(passing)])
    groups = [  # each architecture's rows, registered under its pairs' experiment name
        (next(p["experiment"] for p in pairs if p["model"] == model), part)
        for model, part in rows.groupby("model", sort=False)
    ]
    if len(rows):
        groups.append((prefix_of(sweep), rows))
    for name, part in groups:
        register_versions(client, name, part)
        champions[name] = f"models:/{name}@{CHAMPION}"
    for name in dict.fromkeys([*(p["experiment"] for p in pairs), prefix_of(sweep)]):
        if name not in champions:
            drop_broken_champion(client, name)
    return champions


def prefix_of(sweep) -> str:
    """Return the sweep's `prefix` param, as given (MLflow stores it shell-quoted when it needs quotes)."""
    return shlex.split(sweep.data.params.get("prefix", "fabric_madness"))[0]


def drop_broken_champion(client, name: str) -> None:
    """Remove the champion alias from a version whose files are gone (the model has no whole run this
    time): `models:/<name>@champion` then fails to resolve, instead of loading a model that is not there."""
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return  # not registered, or no alias
    problem = train_run_problem(client, version.run_id)
    if problem is not None:
        client.delete_registered_model_alias(name, CHAMPION)
        print(
            f"removed alias {CHAMPION} of {name} (version {version.version}, run {version.run_id}): {problem}",
            flush=True,
        )


def register_versions(client, name: str, rows) -> None:
    """Give each run of `rows` one version of the registered model `name` (its own, when it has one)
    and alias the first row's `champion`. Reports registering at once need no lock: see version_of."""
    try:
        client.create_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    versions = [version_of(client, name, run_id) for run_id in rows["run_id"]]  # ranked: best mean Brier first
    try:
        client.set_registered_model_alias(name, CHAMPION, str(versions[0]))
    except MlflowException:
        # Two reports setting a new alias at once: MLflow's SQL store reads, then inserts, and the
        # second insert breaks the alias's unique key. Set again, the alias is there: an update.
        client.set_registered_model_alias(name, CHAMPION, str(versions[0]))


def versions_holding(client, name: str, run_id: str) -> list[int]:
    """Return the numbers of the versions of `name` made from the run, lowest first."""
    # Searched by run alone: the name comes from the user's prefix, and a quote in it (it's)
    # cannot be escaped in every MLflow filter.
    return sorted(int(v.version) for v in client.search_model_versions(f"run_id = '{run_id}'") if v.name == name)


def version_of(client, name: str, run_id: str) -> int:
    """Return the version of `name` made from the run, making it when there is none.

    Two reports registering the run at once may each make one. The registry numbers a model's
    versions one above the highest it has stored, so whoever made the higher number sees the lower
    one: each keeps the lowest and deletes its own when that is not it, and one version remains."""
    held = versions_holding(client, name, run_id)
    if held:
        return held[0]
    made = int(new_version(client, name, run_id).version)
    lowest = versions_holding(client, name, run_id)[0]
    if lowest != made:
        client.delete_model_version(name, str(made))
    return lowest


def new_version(client, name: str, run_id: str):
    """Register a version of `name` from the run's logged model, and return it. MLflow 3 keeps a model as a logged model,
    not as run artifacts: named by its id (models:/<model id>), MLflow finds it without first looking
    for artifacts under runs:/<id>/model and warning that there are none."""
    outputs = client.get_run(run_id).outputs
    model_ids = [output.model_id for output in (outputs.model_outputs if outputs else [])]
    if not model_ids:  # logged before MLflow 3: the model is the run's artifacts
        return mlflow.register_model(f"runs:/{run_id}/{names.MODEL_DIR}", name)
    return client.create_model_version(name, f"models:/{model_ids[0]}", run_id=run_id, model_id=model_ids[0])


def write_report(sweep_run_id: str, filter_string: str, do_register: bool, folder: Path) -> dict:
    """Build every report file in `folder`; return the summary that is printed."""
    client = mlflow.MlflowClient()
    pairs = sweep_pairs(sweep_run_id)
    sweep = client.get_run(sweep_run_id)
    rows = table_rows(client, pairs)
    table = tables.runs_table(rows)
    # The pairs whose network gives about the same probability to every game (train's tag).
    constant = [f"{row['model']} lr={row['lr']}" for row in rows if row.get("constant")]
    passing = filtered(pairs, filter_string, set(table.loc[table["status"] == Status.FINISHED, "run_id"]))
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / names.RUNS_CSV, index=False)
    (folder / names.RUNS_MD).write_text(tables.markdown(table) + "\n" + tables.BRIER_WORDS + "\n")
    chart, cells = tables.chart_frame(table), loss_histories(client, pairs)
    digest = tables.figures_digest(chart, cells, drawn_by())
    reused_from = earlier_figures(client, sweep.info.experiment_id, digest, folder)
    if reused_from is None:
        plots.brier_by_lr_figure(chart).savefig(folder / names.BRIER_CHART, dpi=100)
        loss_grid(cells).savefig(folder / names.LOSS_GRID, dpi=80)
    columns = ["run_id", "tags.mlflow.runName", f"metrics.{names.BRIER}", "params.lr", "params.model"]
    passing.filter(items=columns).to_csv(folder / names.FILTERED_CSV, index=False)  # those of them it has
    best = tables.ranked_row(table)
    summary = {
        "sweep_run_id": sweep_run_id,
        "filter": filter_string,
        "passing": passing["run_id"].tolist(),
        "best": best,
        "constant": constant,
    }
    if best is not None:
        summary["best_model_uri"] = f"runs:/{best['run_id']}/{names.MODEL_DIR}"
        summary["how_sure"] = how_sure(best, tables.ranked_row(table, 1))
        if do_register:
            summary["champions"] = register(client, sweep, pairs, table, set(summary["passing"]))
            if best["run_id"] in summary["passing"]:  # the best passes: it is the overall champion
                summary["best_model_uri"] = summary["champions"][prefix_of(sweep)]
    (folder / names.BEST_FILE).write_text(json.dumps(summary, indent=1, default=str))
    summary["markdown"] = tables.markdown(table)
    summary["figures_digest"], summary["figures_from"] = digest, reused_from
    return summary


def how_sure(best: dict, runner_up: dict | None) -> str:
    """Return whether the test games tell the best run from the runner-up (both runs' predictions.csv,
    paired bootstrap over the same games), or why that cannot be said."""
    if runner_up is None:
        return tables.NO_RUNNER_UP
    frames = []
    for row in (best, runner_up):
        try:
            text = mlflow.artifacts.load_text(f"runs:/{row['run_id']}/{names.PREDICTIONS_FILE}")
        except Exception:  # noqa: BLE001 - absent (a run trained before predictions were logged): MLflow raises several types
            return f"not compared with the runner-up: run {row['run_id']} has no {names.PREDICTIONS_FILE}"
        frames.append(pd.read_csv(io.StringIO(text)))
    return tables.how_sure(best, runner_up, *frames)


def print_summary(summary: dict) -> None:
    """Print the runs table, the pairs with constant predictions, the runs passing the filter, how sure, and last
    the best model's URI (the line for scripts)."""
    print(summary["markdown"])
    print(tables.BRIER_WORDS)
    if summary["constant"]:
        print(
            f"constant predictions (about the same probability for every game: the network learned nothing; "
            f"try a lower learning rate): {', '.join(summary['constant'])}"
        )
    print(
        f"{len(summary['passing'])} run(s) pass the filter {summary['filter']!r}: {', '.join(summary['passing']) or 'none'}"
    )
    best = summary["best"]
    if best is None:
        print("no run finished with a Brier score")
    else:
        # Said before the best, whose line stays the last: it ends with the model's URI, for scripts.
        print(f"how sure: {summary['how_sure']}")
        print(
            f"best: {best['model']} with learning rate {best['lr']}, {tables.brier_text(best)} -> {summary['best_model_uri']}"
        )


def report(sweep_run_id: str, filter_string: str, do_register: bool) -> dict:
    """Write the sweep's report, log it under report/ of the sweep run (and of the active run, when another) with
    its figures' digest, print it, and return its summary."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / names.REPORT_DIR
        summary = write_report(sweep_run_id, filter_string, do_register, folder)
        client = mlflow.MlflowClient()
        client.log_artifacts(sweep_run_id, str(folder), names.REPORT_DIR)
        # Tagged once the figures are stored: a later report with the same digest may copy them.
        client.set_tag(sweep_run_id, names.TAG_FIGURES_DIGEST, summary["figures_digest"])
        active = mlflow.active_run()
        if active is not None and active.info.run_id != sweep_run_id:
            mlflow.log_artifacts(str(folder), names.REPORT_DIR)
            mlflow.set_tags({names.TAG_SWEEP: sweep_run_id, names.TAG_FIGURES_DIGEST: summary["figures_digest"]})
    if summary["figures_from"]:
        print(f"figures unchanged since run {summary['figures_from']}: copied, not drawn again", flush=True)
    print_summary(summary)
    return summary


@entry_point
def main(argv=None):
    """Run the report entry point: parse its params, end orphaned runs, report the sweep (see the module docstring)."""
    values, raw = parse("report", __doc__.splitlines()[0], PARAMS, argv)
    with start_run("report", raw) as run:
        client = mlflow.MlflowClient()
        sweep_run_id = values["sweep_run_id"] or latest_sweep(client)
        end_orphans_of(client, sweep_run_id, run.info.run_id)
        report(sweep_run_id, values["filter"], values["register"])


def end_orphans_of(client, sweep_run_id: str, by: str) -> None:
    """End the runs of the sweep's experiments and of the project's (steps._never_started.project_experiments)
    left RUNNING by processes that are gone, so the report shows what is true."""
    try:
        sweep = client.get_run(sweep_run_id)
    except MlflowException as err:
        raise UserError(
            f"no run {sweep_run_id!r} in this tracking store ({err.error_code}); give a sweep run id"
        ) from None
    pairs = sweep_pairs(sweep_run_id)
    watched = [
        sweep.info.experiment_id,
        *(p["experiment_id"] for p in pairs),
        *project_experiments(client, prefix_of(sweep)),
    ]
    end_orphans(client, watched, Liveness(client), f"report {by}")


if __name__ == "__main__":
    run_as_script(main)
