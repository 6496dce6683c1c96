"""The local cluster's Kubernetes side (`make cluster` starts it, tools/cluster.py): a Kubernetes API
on loopback (kmock's in-memory emulator over HTTP) and, in the same process, a node agent playing the
Job controller and the kubelet by running each Job's container with `docker run --network=host`.

What it emulates is what the project's code and MLflow's kubernetes backend depend on, as the real
components behave: objects get a uid, creationTimestamp, resourceVersion and `status` on create; a
Job's pod is a `v1/pods` object owned by the Job, its container started with the pod's name as its
hostname, the template's command and args, env (values, and a Secret's keys through
envFrom/secretKeyRef), CPU and memory limits; the Job's status gets startTime/active when its pod
is created, then a Complete or Failed condition, retrying failed pods up to backoffLimit; a pod
whose image cannot be pulled stays Pending (ErrImagePull) and its Job never ends, as on a real
node; deleting a Job with propagationPolicy Background or Foreground deletes its pods (their
containers stopped as a kubelet stops them: SIGTERM, then SIGKILL after the pod's
terminationGracePeriodSeconds, 30 by default), and without one orphans them (they keep running),
the batch/v1 API's default.
Nothing else is (no scheduling, no quotas, no watches on pods' logs: a pod's output is in
`<state>/logs/<pod>.log`).

Runs in the cluster's own environment (kmock is not in requirements.lock):
  .cluster/venv/bin/python tools/cluster_node.py --port 6443 --state .cluster
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import itertools
import os
import re
import signal
import uuid
from pathlib import Path

import kmock

JOBS = kmock.resource("batch", "v1", "jobs")
PODS = kmock.resource("", "v1", "pods")
SECRETS = kmock.resource("", "v1", "secrets")
NAMESPACES = kmock.resource("", "v1", "namespaces")
KINDS = {JOBS: "Job", PODS: "Pod", SECRETS: "Secret", NAMESPACES: "Namespace"}
SYNC_SECONDS = 0.5
GRACE_SECONDS = 30  # a pod's terminationGracePeriodSeconds when its spec says none, as the API's default
# What `docker run` prints when it cannot get the image: a real kubelet keeps such a pod Pending.
PULL_FAILURE = re.compile(r"Unable to find image|pull access denied|manifest unknown|not found|connection refused")


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Cluster(kmock.KubernetesEmulator):
    """kmock's emulator with what the real API server adds on create, and Job deletions remembered
    with their propagation policy for the node agent to carry out."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.versions = itertools.count(1)
        self.deletions: asyncio.Queue = asyncio.Queue()
        for resource, kind in KINDS.items():
            self.resources[resource] = kmock.ResourceInfo(kind=kind, namespaced=resource != NAMESPACES)

    async def _handle(self, request):
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            metadata = request.data.setdefault("metadata", {})
            metadata.update(uid=str(uuid.uuid4()), creationTimestamp=now(), resourceVersion=str(next(self.versions)))
            request.data.setdefault("status", {})
            if request.namespace and not metadata.get("namespace"):
                metadata["namespace"] = request.namespace
        if request.action == kmock.action.DELETE and request.resource == JOBS and request.name:
            # DeleteOptions travel in the body (the Python client) or the query (kubectl).
            options = request.data if isinstance(request.data, dict) else {}
            policy = options.get("propagationPolicy") or request.params.get("propagationPolicy") or "Orphan"
            self.deletions.put_nowait((request.namespace, request.name, policy))
        return await super()._handle(request)


def quantity(text: str) -> float:
    """Return a Kubernetes quantity ("500m", "2", "4Gi", "512M") as a plain number."""
    units = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text)).groups()
    return float(number) * units.get(unit, 1)


def pull_error(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "the image could not be pulled"


def container_status(container: dict, state: dict) -> dict:
    """Return a pod's containerStatuses entry, with the fields the API requires."""
    return {"name": container["name"], "image": container["image"], "imageID": "", "ready": False,
            "restartCount": 0, "state": state}  # fmt: skip


class Node:
    """The Job controller and kubelet of a one-node cluster, over the emulator's objects."""

    def __init__(self, cluster: Cluster, logs: Path):
        self.cluster, self.logs = cluster, logs
        self.pods: dict[tuple, asyncio.Task] = {}  # (namespace, job) -> the task running its pods
        self.stopping: set[asyncio.Task] = set()  # deleted pods' containers being stopped

    async def run(self) -> None:
        while True:
            for (resource, namespace, name), job in list(self.cluster.objects.items()):
                if resource == JOBS and not job.deleted and (namespace, name) not in self.pods:
                    self.pods[namespace, name] = asyncio.create_task(self.run_job(namespace, name, dict(job.raw)))
            while not self.cluster.deletions.empty():
                await self.delete_job(*self.cluster.deletions.get_nowait())
            await asyncio.sleep(SYNC_SECONDS)

    def patch(self, resource, namespace: str, name: str, change: dict) -> None:
        key = (resource, namespace, name)
        if key in self.cluster.objects and not self.cluster.objects[key].deleted:
            self.cluster.objects[key].patch(
                {**change, "metadata": {"resourceVersion": str(next(self.cluster.versions))}}
            )

    async def run_job(self, namespace: str, name: str, job: dict) -> None:
        """Run the Job's pod until one succeeds or backoffLimit more have failed, as the Job controller."""
        backoff_limit = job["spec"].get("backoffLimit", 6)
        self.patch(JOBS, namespace, name, {"status": {"startTime": now(), "active": 1}})
        for attempt in range(backoff_limit + 1):
            exit_code = await self.run_pod(namespace, f"{name}-{attempt}", job)
            if exit_code is None:  # never started: the real controller waits, as here
                return
            if exit_code == 0:
                self.patch(JOBS, namespace, name, {"status": {
                    "active": 0, "succeeded": 1, "completionTime": now(),
                    "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": now()}],
                }})  # fmt: skip
                return
            self.patch(JOBS, namespace, name, {"status": {"failed": attempt + 1}})
        self.patch(JOBS, namespace, name, {"status": {"active": 0, "conditions": [{
            "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "lastTransitionTime": now(),
            "message": f"Job has reached the specified backoff limit ({backoff_limit})",
        }]}})  # fmt: skip

    async def run_pod(self, namespace: str, pod: str, job: dict) -> int | None:
        """Create the pod object and run its container; return its exit code, None if it never started."""
        spec = job["spec"]["template"]["spec"]
        container = spec["containers"][0]
        owner = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": job["metadata"]["name"],
            "uid": job["metadata"]["uid"],
        }
        labels = {**job["spec"]["template"].get("metadata", {}).get("labels", {}), "job-name": job["metadata"]["name"]}
        self.cluster.objects[PODS, namespace, pod] = {
            "apiVersion": "v1", "kind": "Pod", "spec": spec, "status": {"phase": "Pending"},
            "metadata": {"name": pod, "namespace": namespace, "labels": labels, "ownerReferences": [owner],
                         "uid": str(uuid.uuid4()), "creationTimestamp": now()},
        }  # fmt: skip
        try:
            env = self.environment(namespace, container)
        except LookupError as missing:
            waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": str(missing).strip("'\"")}}
            self.patch(PODS, namespace, pod, {"status": {"containerStatuses": [container_status(container, waiting)]}})
            return None
        limits = container.get("resources", {}).get("limits", {})
        command = [
            "docker", "run", "--name", pod, "--hostname", pod, "--network=host", "--rm",
            *(["--cpus", str(quantity(limits["cpu"]))] if "cpu" in limits else []),
            *(["--memory", str(int(quantity(limits["memory"])))] if "memory" in limits else []),
            *itertools.chain.from_iterable(("--env", f"{key}={value}") for key, value in env.items()),
            *(["--workdir", container["workingDir"]] if "workingDir" in container else []),
            *(["--entrypoint", container["command"][0]] if container.get("command") else []),
            container["image"], *container.get("command", [])[1:], *container.get("args", []),
        ]  # fmt: skip
        log = self.logs / f"{pod}.log"
        with log.open("wb") as output:
            process = await asyncio.create_subprocess_exec(*command, stdout=output, stderr=output)
            self.patch(PODS, namespace, pod, {"status": {"phase": "Running", "startTime": now()}})
            exit_code = await process.wait()
        if exit_code == 125 and PULL_FAILURE.search(log.read_text(errors="replace")):
            self.patch(PODS, namespace, pod, {"status": {"phase": "Pending", "containerStatuses": [
                container_status(container, {"waiting": {"reason": "ErrImagePull", "message": pull_error(log)}})]}})  # fmt: skip
            return None
        phase = "Succeeded" if exit_code == 0 else "Failed"
        self.patch(PODS, namespace, pod, {"status": {"phase": phase, "containerStatuses": [
            container_status(container, {"terminated": {"exitCode": exit_code}})]}})  # fmt: skip
        return exit_code

    def environment(self, namespace: str, container: dict) -> dict:
        """Return the container's variables: envFrom Secrets first, then env (values and secretKeyRef), as the kubelet."""
        env = {}
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                env.update(self.secret(namespace, source["secretRef"]))
        for variable in container.get("env", []):
            if "value" in variable:
                env[variable["name"]] = variable["value"]
            elif "secretKeyRef" in variable.get("valueFrom", {}):
                reference = variable["valueFrom"]["secretKeyRef"]
                values = self.secret(namespace, reference)
                if reference["key"] in values or not reference.get("optional"):
                    env[variable["name"]] = values[reference["key"]]
        return env

    def secret(self, namespace: str, reference: dict) -> dict:
        key = (SECRETS, namespace, reference["name"])
        if key not in self.cluster.objects or self.cluster.objects[key].deleted:
            if reference.get("optional"):
                return {}
            raise LookupError(f'secret "{reference["name"]}" not found')
        secret = self.cluster.objects[key].raw
        decoded = {name: base64.b64decode(value).decode() for name, value in (secret.get("data") or {}).items()}
        return {**decoded, **(secret.get("stringData") or {})}

    async def delete_job(self, namespace: str, name: str, policy: str) -> None:
        """Delete the Job's pods and stop their containers (Background, Foreground), or orphan them (Orphan)."""
        for (resource, pod_namespace, pod), obj in list(self.cluster.objects.items()):
            owners = obj.get("metadata", {}).get("ownerReferences", []) if not obj.deleted else []
            if resource != PODS or pod_namespace != namespace or not any(o["name"] == name for o in owners):
                continue
            if policy == "Orphan":
                obj.patch({"metadata": {"ownerReferences": []}})
                continue
            grace = obj.get("spec", {}).get("terminationGracePeriodSeconds", GRACE_SECONDS)
            stopper = asyncio.create_task(stop_container(pod, grace))
            self.stopping.add(stopper)  # asyncio keeps only a weak reference to a task
            stopper.add_done_callback(self.stopping.discard)
            obj.delete()
        task = self.pods.pop((namespace, name), None)
        if task is not None and policy != "Orphan":
            task.cancel()


async def stop_container(pod: str, grace: float) -> None:
    """Stop a deleted pod's container as a kubelet does: SIGTERM, then SIGKILL once `grace` seconds
    have passed (the container was run with --rm: docker removes it)."""
    stopper = await asyncio.create_subprocess_exec(
        "docker", "stop", "--time", str(int(grace)), pod,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await stopper.wait()


async def serve(port: int, state: Path) -> None:
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    async with Cluster() as cluster, kmock.Server(cluster, host="127.0.0.1", port=port):
        node = asyncio.create_task(Node(cluster, logs).run())
        print(f"Kubernetes API on http://127.0.0.1:{port}, pods' output in {logs}", flush=True)
        await stop.wait()
        node.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True, help="the cluster's folder (logs/ holds pods' output)")
    args = parser.parse_args()
    os.environ.setdefault("DOCKER_HOST", f"unix://{args.state.resolve()}/docker.sock")
    asyncio.run(serve(args.port, args.state))


if __name__ == "__main__":
    main()
