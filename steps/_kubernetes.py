"""A Kubernetes child of the sweep: MLflow's KubernetesSubmittedRun, with what it lacks on a real
cluster (MLflow 3.17, 3.18), through the same public SubmittedRun API the launcher uses.

- `cancel` deletes the Job with propagationPolicy Background, so its pods go too: MLflow's deletes
  it with none, and the batch/v1 API's default then orphans the pod, which keeps training.
- `get_status` reports FAILED a child whose pod has not started `start_seconds` after the pod said
  why (an image that cannot be pulled, a missing Secret, no node to schedule it on; the backend
  configuration's pod-start-seconds, madness.backends.POD_START) and deletes its Job:
  MLflow's waits for the Job's own Complete or Failed condition, which such a Job never gets.
  `reason` then says why, for the sweep's line.
"""

from __future__ import annotations

import time

from mlflow.entities import RunStatus
from mlflow.projects.kubernetes import KubernetesSubmittedRun
from mlflow.projects.submitted_run import SubmittedRun

import kubernetes

POLL_SECONDS = KubernetesSubmittedRun.POLL_STATUS_INTERVAL


def job_of(submitted: KubernetesSubmittedRun) -> tuple[str, str]:
    """Return the (namespace, name) of the Job behind MLflow's SubmittedRun, which MLflow keeps private
    (tests/test_kubernetes.py fails when that changes)."""
    return submitted._job_namespace, submitted._job_name


def why_not_started(pod) -> str | None:
    """Return why a pending pod cannot start, as its status says it (a container waiting with a reason,
    or unschedulable); None while it is merely on its way or has started."""
    status = pod.status
    if status is None or status.phase != "Pending":
        return None
    for container in status.container_statuses or []:
        waiting = container.state.waiting if container.state else None
        if waiting is not None and waiting.reason not in (None, "ContainerCreating", "PodInitializing"):
            return f"{waiting.reason}{f' ({waiting.message})' if waiting.message else ''}"
    for condition in status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return f"{condition.reason}{f' ({condition.message})' if condition.message else ''}"
    return None


class KubernetesChild(SubmittedRun):
    """MLflow's KubernetesSubmittedRun, wrapped: cancel deletes its pods too; a pod that cannot start fails the run."""

    def __init__(self, submitted: KubernetesSubmittedRun, start_seconds: float):
        super().__init__()
        self.submitted, self.start_seconds = submitted, start_seconds
        self.namespace, self.name = job_of(submitted)
        self.reason = ""
        self.stuck_since: float | None = None
        self.failed = False

    @property
    def run_id(self) -> str:
        return self.submitted.run_id

    def wait(self) -> bool:
        """Poll the Job's status until it ends; return whether it FINISHED."""
        while not RunStatus.is_terminated(status := self.get_status()):
            time.sleep(POLL_SECONDS)
        return status == RunStatus.FINISHED

    def get_status(self):
        """Return MLflow's status of the Job; FAILED once its pod has said for start_seconds why it cannot start."""
        if self.failed:
            return RunStatus.FAILED
        status = self.submitted.get_status()
        if RunStatus.is_terminated(status):
            return status
        why = self.pod_problem()
        if why is None:
            self.stuck_since = None
            return status
        self.stuck_since = self.stuck_since or time.monotonic()
        if time.monotonic() - self.stuck_since < self.start_seconds:
            return status
        self.reason = f"its pod did not start in {self.start_seconds:g} s: {why}"
        self.cancel()
        self.failed = True
        return RunStatus.FAILED

    def pod_problem(self) -> str | None:
        """Return why one of the Job's pods cannot start (see why_not_started), or None."""
        pods = kubernetes.client.CoreV1Api().list_namespaced_pod(self.namespace, label_selector=f"job-name={self.name}")
        # Only this Job's pods, whether or not the API server applied the selector.
        mine = [pod for pod in pods.items if (pod.metadata.labels or {}).get("job-name") == self.name]
        return next((why for pod in mine if (why := why_not_started(pod))), None)

    def cancel(self) -> None:
        """Delete the Job and its pods (MLflow's cancel would orphan them)."""
        kubernetes.client.BatchV1Api().delete_namespaced_job(self.name, self.namespace, propagation_policy="Background")
