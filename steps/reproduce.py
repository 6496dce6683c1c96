"""Reproduce: rerun a past run from its own git commit with its own params, and compare every metric.

Its params are PARAMS below (and MLproject). The run's commit (tag `mlflow.source.git.commit`) is
checked out in a temporary, detached `git worktree` of the repository it came from, so your working
tree and branch are never touched; its entry point runs there through `mlflow.projects.run` with
the params it logged; the worktree is removed afterwards, also on failure or interrupt. A run
launched from a remote git URL is rerun with `mlflow.projects.run(<url>, version=<commit>)`.
The rerun is a child of this run tagged `reproduces=<run_id>`; every metric of either run (histories
step by step) is printed and logged as `comparison.txt`. The exit code is non-zero when a metric
differs beyond `tolerance` or is missing on one side.

    mlflow run . -e reproduce -P run_id=<run id> --env-manager local
    python -m steps.reproduce --run_id <run id>
"""

from __future__ import annotations

import os
import sys
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.projects
from mlflow.exceptions import MlflowException

from madness import describe, names
from madness import reproduce as reproduction
from madness.cli import Param, non_negative, not_empty, one_of, parse
from madness.errors import UserError, first_line
from madness.names import Status
from steps import _lifecycle
from steps._entry import PROJECT_ROOT, entry_point, run_as_script, start_run
from steps._runs import end_killed, end_run

PARAMS = (
    Param("run_id", "string", None, "the run to rerun", not_empty),
    Param("tolerance", "float", 0.0, "largest accepted |difference| of a metric (0 = bit for bit)", non_negative),
    Param(
        "env_manager",
        "string",
        "",
        "local, virtualenv, uv or conda; empty: the one the run used",
        one_of("", *names.ENV_MANAGERS),
    ),
    Param("experiment", "string", "", "experiment (name or id) for the rerun; empty: the original's"),
)


@dataclass
class Plan:
    """What a rerun needs, read from the original run."""

    run_id: str
    commit: str
    entry: str
    params: dict[str, str]
    env_manager: str
    experiment_id: str
    source: reproduction.Source
    run_name: str  # the rerun's: the original's name and "_rerun", so the two sit side by side in a list


def original_run(client, run_id: str):
    """Return the run `run_id`; raise UserError when the tracking store has no such run."""
    try:
        return client.get_run(run_id)
    except MlflowException as err:
        raise UserError(
            f"no run {run_id!r} in the tracking store {mlflow.get_tracking_uri()}: {first_line(err)}"
        ) from None


def rerun_description(run_id: str, entry: str, commit: str, params: dict[str, str]) -> str:
    """Return the one line shown above the runs of an experiment created for reruns."""
    what = f"entry point {entry}"
    if entry == "train" and params.get("model"):
        grid = describe.grid_words([params.get("lr", "?")], params.get("epochs", "?"))
        what += f": {describe.network_words(params['model'])} at {grid}"
    return (
        f"Fabric Madness: reruns of past runs at their own git commits, each beside the reproduce run that "
        f"compares its metrics with the original's; made for run {run_id} ({what}) at commit {commit[:12]}"
    )


def rerun_experiment(client, wanted: str, original_experiment: str, description: str) -> str:
    """Return the experiment for the rerun: by name, else by id, else a new one of that name, a model-training
    experiment with `description` (shown above its runs in MLflow's UI); empty: the original's."""
    if not wanted:
        experiment = client.get_experiment(original_experiment)
    else:
        experiment = client.get_experiment_by_name(wanted)
        if experiment is None and wanted.isdigit():
            with suppress(MlflowException):
                experiment = client.get_experiment(wanted)
        if experiment is None:
            print(f"creating experiment {wanted!r}", flush=True)
            return client.create_experiment(wanted, tags=describe.training_tags(description))
    if experiment.lifecycle_stage != "active":
        raise UserError(
            f"experiment {experiment.name!r} ({experiment.experiment_id}) is deleted; "
            "restore it or pass --experiment <name>"
        )
    return experiment.experiment_id


def plan(client, run, values: dict) -> Plan:
    """Return how to rerun `run`; raise UserError when it records no commit, entry point or source, or when its
    experiment is deleted."""
    tags = run.data.tags
    run_id = run.info.run_id
    commit = tags.get(names.TAG_COMMIT)
    if not commit:
        raise UserError(
            f"run {run_id} has no git commit (tag {names.TAG_COMMIT}): it was not started from a git "
            "repository, so the code it ran cannot be checked out"
        )
    entry = tags.get(names.TAG_PROJECT_ENTRY_POINT) or tags.get(names.TAG_ENTRY_POINT)
    if not entry:
        raise UserError(
            f"run {run_id} records no entry point (tag {names.TAG_PROJECT_ENTRY_POINT} or {names.TAG_ENTRY_POINT}); "
            "only runs of an MLproject's entry points can be rerun"
        )
    if not tags.get(names.TAG_SOURCE_NAME):
        raise UserError(
            f"run {run_id} records no source (tag {names.TAG_SOURCE_NAME}): the repository it came from is unknown"
        )
    params = reproduction.unquote_params(run.data.params, shell_quoted=names.TAG_PROJECT_ENTRY_POINT in tags)
    description = rerun_description(run_id, entry, commit, params)
    return Plan(
        run_id=run_id,
        commit=commit,
        entry=entry,
        params=params,
        env_manager=reproduction.choose_env_manager(values["env_manager"], tags),
        experiment_id=rerun_experiment(client, values["experiment"], run.info.experiment_id, description),
        source=reproduction.parse_source(tags[names.TAG_SOURCE_NAME]),
        run_name=f"{run.info.run_name}_rerun",
    )


def lineage(client, run, hops: int = 10) -> list[Path]:
    """Return the local sources of the runs this one reproduces (its own source may be a removed worktree)."""
    paths = []
    for _ in range(hops):
        original_id = run.data.tags.get(names.TAG_REPRODUCES)
        if not original_id:
            break
        try:
            run = client.get_run(original_id)
        except MlflowException:
            break
        source = reproduction.parse_source(run.data.tags.get(names.TAG_SOURCE_NAME, ""))
        if source.local and source.location:
            paths.append(Path(source.location) / source.subdirectory)
    return paths


def launch(client, p: Plan, uri: str, params: dict[str, str], version: str | None) -> str:
    """Run the entry point; tag the rerun `reproduces`; return its id. A failed rerun is a UserError."""
    parent = mlflow.active_run().info.run_id
    # With env_manager local the rerun's `python` is this one, even from an unactivated venv.
    path = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        with _lifecycle.environment(path if p.env_manager == "local" else {}):
            submitted = mlflow.projects.run(
                uri,
                entry_point=p.entry,
                version=version,
                parameters=params,
                env_manager=p.env_manager,
                experiment_id=p.experiment_id,
                run_name=p.run_name,
                synchronous=True,
            )
    except BaseException as err:
        stopped = isinstance(err, KeyboardInterrupt) or _lifecycle.stop.is_set()  # the watch stopped the rerun too
        rerun = None  # the run MLflow made as this run's child, if it got that far and the store answers
        with suppress(MlflowException):
            found = client.search_runs([p.experiment_id], f"tags.`{names.TAG_PARENT_RUN}` = '{parent}'", max_results=1)
            rerun = found[0].info.run_id if found else None
        if rerun:
            client.set_tag(rerun, names.TAG_REPRODUCES, p.run_id)
            # Interrupted before its command started, nobody else ends it; stopped after, MLflow ended it
            # FAILED over the KILLED its step set (steps._runs.end_killed).
            if stopped:
                end_killed(client, rerun)
            else:
                end_run(client, rerun, Status.FAILED)
        _lifecycle.check_stop()
        if isinstance(err, MlflowException):  # ExecutionException: a failed run, a bad version or URI
            raise UserError(
                f"the rerun{' ' + rerun if rerun else ''} of run {p.run_id} at commit {p.commit[:12]} failed: "
                f"{first_line(err)}"
            ) from None
        raise
    client.set_tag(submitted.run_id, names.TAG_REPRODUCES, p.run_id)
    return submitted.run_id


def rerun_in_worktree(client, run, p: Plan) -> str:
    """Rerun the plan from its commit, checked out in a temporary worktree, and return the rerun's id. Params that
    the commit's MLproject does not declare are left out; UserError when it has no MLproject."""
    # The run's source first, then those of the runs it reproduces, then this project: the source may be a
    # removed worktree or a moved clone.
    recorded = Path(p.source.location) / p.source.subdirectory
    candidates = dict.fromkeys([recorded, *lineage(client, run), Path.cwd(), PROJECT_ROOT])
    repo, subdirectory = reproduction.find_repository(list(candidates), p.commit)
    print(f"checking out commit {p.commit[:12]} of {repo} in a temporary worktree", flush=True)
    with reproduction.worktree(repo, p.commit) as tree:
        project = tree / subdirectory
        mlproject = project / reproduction.MLPROJECT_FILE
        if not mlproject.is_file():
            raise UserError(
                f"commit {p.commit[:12]} has no {reproduction.MLPROJECT_FILE} in {subdirectory or 'its top folder'}"
            )
        params, dropped = reproduction.select_params(p.params, mlproject.read_text(), p.entry)
        if dropped:
            print(
                f"warning: params not declared by entry point {p.entry!r} at that commit, left out: {', '.join(dropped)}",
                flush=True,
            )
        for link, target in reproduction.link_inputs(params, repo / subdirectory, project, tree.parent):
            print(
                f"linked {link.relative_to(tree.parent)} -> {target} (a folder a param names, absent from the checkout)",
                flush=True,
            )
        return launch(client, p, str(project), params, version=None)


def histories(client, run) -> dict[str, reproduction.Points]:
    """Return each metric of the run with its history, as (step, timestamp, value) points."""
    return {
        key: [(m.step, m.timestamp, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        for key in run.data.metrics
    }


@entry_point
def main(argv=None):
    """Run the reproduce entry point: parse its params, rerun the run, compare metrics (see the module docstring)."""
    values, raw = parse("reproduce", __doc__.splitlines()[0], PARAMS, argv)
    # The rerun works in the worktree: a relative store (sqlite:///mlflow.db) must mean this one.
    store = reproduction.absolute_tracking_uri(mlflow.get_tracking_uri(), Path.cwd())
    if store != mlflow.get_tracking_uri():
        mlflow.set_tracking_uri(store)
    client = mlflow.MlflowClient()
    run = original_run(client, values["run_id"])
    p = plan(client, run, values)
    where = p.source.location if p.source.local else f"{p.source.location} (remote)"
    print(
        f"rerunning run {p.run_id}: entry point {p.entry} at commit {p.commit[:12]} of {where}, "
        f"env_manager {p.env_manager}, into experiment {p.experiment_id}",
        flush=True,
    )
    if run.data.tags.get(names.TAG_DIRTY) == "true":
        print(
            f"warning: run {p.run_id} ran from a working tree with uncommitted changes ({names.TAG_DIRTY}=true): "
            f"commit {p.commit[:12]} is not exactly the code that ran, so its metrics may not reproduce",
            flush=True,
        )
    if run.info.status != Status.FINISHED:
        print(f"warning: run {p.run_id} is {run.info.status}; its metrics may be incomplete", flush=True)

    with start_run("reproduce", raw, experiment_id=p.experiment_id):
        if p.source.local:
            rerun_id = rerun_in_worktree(client, run, p)
        else:
            uri = p.source.location + (f"#{p.source.subdirectory}" if p.source.subdirectory else "")
            rerun_id = launch(client, p, uri, p.params, version=p.commit)
        rerun = client.get_run(rerun_id)
        rows = reproduction.compare(histories(client, run), histories(client, rerun))
        text = reproduction.table(rows, values["tolerance"])
        mlflow.log_text(text + "\n", names.COMPARISON_FILE)
        print(
            f"\nrun {p.run_id} (original) against run {rerun_id} (rerun), tolerance {raw['tolerance']}:\n{text}",
            flush=True,
        )
        problem = reproduction.verdict(rows, values["tolerance"])
        if problem:
            raise UserError(f"not reproduced: {problem}; rerun {rerun_id}")
    how = "bit for bit" if values["tolerance"] == 0 else f"within {raw['tolerance']}"
    print(
        f"reproduced: rerun {rerun_id} matches run {p.run_id} on {len(rows)} metrics {how}"
        if rows
        else f"reproduced: rerun {rerun_id} finished; neither run logged a metric to compare"
    )


if __name__ == "__main__":
    run_as_script(main)
