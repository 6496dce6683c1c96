"""The one way a run is ended by anyone other than the step that started it."""

from __future__ import annotations

from madness import names
from madness.names import Status


def end_run(
    client, run_id: str, status: Status, reason: str | None = None, only: tuple[Status, ...] = (Status.RUNNING,)
) -> Status:
    """End the run with `status` if it is still in one of the statuses `only` (RUNNING by default), tagging
    `reason` as `ended_by` when given; return the run's status afterwards. A run already ended is left as it is."""
    current = Status(client.get_run(run_id).info.status)
    if current not in only:
        return current
    client.set_terminated(run_id, status)
    if reason:
        client.set_tag(run_id, names.TAG_ENDED_BY, reason)
    return status


def end_killed(client, run_id: str) -> Status:
    """End a stopped step's run KILLED, whether still RUNNING or FAILED by the `mlflow run` that
    launched it, and return its status: that launcher writes FAILED over the KILLED the step set on
    seeing its exit code (MLflow 3.17 compares the stored status, a string, with RunStatus numbers,
    so it overwrites any status)."""
    return end_run(client, run_id, Status.KILLED, only=(Status.RUNNING, Status.FAILED))
