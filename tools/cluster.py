"""A one-node Kubernetes stand-in on this machine for MLflow's kubernetes backend, everything on
loopback and in one folder (`.cluster/`, git-ignored):

    python -m tools.cluster start [--dir .cluster]    # make cluster
    python -m tools.cluster stop [--dir .cluster]     # make cluster-stop

What is real: a Docker engine (Debian's docker.io, its own data root and socket, no bridge network:
containers share the host's network), a registry on 127.0.0.1:5001 (Debian's docker-registry), the
base image `python:3.11.7-slim-bookworm` (pulled where Docker Hub is reachable, else made here by
debootstrap plus pyenv's Python 3.11.7, kept in the engine's data root), and every pod a container
of the pushed image. What is emulated: the Kubernetes API (kmock's in-memory server on
127.0.0.1:6443) and the Job controller and kubelet (tools/cluster_node.py). `start` writes
`kubeconfig` (context `fabric-madness-local`), `kubernetes_config.json` (the sweep's
backend_config) and `env` (`. .cluster/env` exports DOCKER_HOST and KUBECONFIG for them). `stop`
ends each process by its id, then unmounts what the engine left mounted. Needs root.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = "python:3.11.7-slim-bookworm"
PYTHON_VERSION = "3.11.7"
REGISTRY = "127.0.0.1:5001"
REPOSITORY = "localhost:5001/fabric-madness"  # localhost: a registry Docker pushes to without TLS
API_PORT = 6443
CONTEXT = "fabric-madness-local"
PACKAGES = {"dockerd": "docker.io", "docker-registry": "docker-registry", "debootstrap": "debootstrap"}
# The cluster's own environment (kmock is not the project's dependency); its dependencies are the lock's.
NODE_REQUIREMENTS = ("kmock==0.8", "kubernetes==36.0.3")
# The shared libraries pyenv's Python links to, and the CA certificates pip needs, in the base image.
BASE_PACKAGES = "ca-certificates,libssl3,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,libreadline8,zlib1g,libncursesw6,libuuid1,libexpat1"
START_SECONDS = 60.0
STOP_SECONDS = 30.0
PROCESSES = ("node", "registry", "dockerd")  # stopped in this order


class ClusterError(Exception):
    """A one-line reason the cluster could not start or stop."""


def run(command: list, what: str, **kwargs) -> str:
    result = subprocess.run([str(part) for part in command], check=False, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        said = (result.stderr.strip() or result.stdout.strip() or f"exit {result.returncode}").splitlines()[-1]
        raise ClusterError(f"{what} failed: {said}")
    return result.stdout


def install_packages() -> None:
    """apt-get install what is missing of Docker's engine, the registry and debootstrap."""
    missing = [package for program, package in PACKAGES.items() if shutil.which(program) is None]
    if missing:
        print(f"installing {' '.join(missing)} (apt-get)", flush=True)
        run(["apt-get", "update", "-qq"], "apt-get update")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], "apt-get install", env=env)


class Cluster:
    def __init__(self, folder: Path):
        self.folder = folder.resolve()
        self.socket = self.folder / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}

    def pid_file(self, name: str) -> Path:
        return self.folder / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        """Return the process id recorded for `name`, if that process is alive."""
        try:
            pid = int(self.pid_file(name).read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def spawn(self, name: str, command: list) -> None:
        """Start `command` in its own session, its output in `<name>.log`, its id in `<name>.pid`."""
        with (self.folder / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [str(part) for part in command], stdout=log, stderr=log, env=self.env, cwd=ROOT, start_new_session=True
            )
        self.pid_file(name).write_text(str(process.pid))

    def wait_for(self, name: str, ready) -> None:
        deadline = time.monotonic() + START_SECONDS
        while not ready():
            if self.pid(name) is None:
                log = (self.folder / f"{name}.log").read_text(errors="replace").strip().splitlines()
                raise ClusterError(f"{name} exited: {log[-1] if log else 'no output'} (see {self.folder / name}.log)")
            if time.monotonic() > deadline:
                raise ClusterError(f"{name} not ready after {START_SECONDS:.0f} s (see {self.folder / name}.log)")
            time.sleep(0.5)

    def docker(self, *args, what: str = "docker") -> str:
        return run(["docker", *args], what, env=self.env)

    def docker_answers(self) -> bool:
        return subprocess.run(["docker", "info"], check=False, capture_output=True, env=self.env).returncode == 0

    def start_docker(self) -> None:
        if self.pid("dockerd"):
            return
        self.spawn("dockerd", [
            "dockerd", "--data-root", self.folder / "docker", "--exec-root", self.folder / "exec",
            "--pidfile", self.folder / "dockerd.engine.pid", "-H", self.env["DOCKER_HOST"],
            "--iptables=false", "--ip6tables=false", "--bridge=none",
        ])  # fmt: skip
        self.wait_for("dockerd", self.docker_answers)

    def start_registry(self) -> None:
        if self.pid("registry"):
            return
        config = self.folder / "registry.yml"
        storage = self.folder / "registry"
        config.write_text(
            "version: 0.1\n"
            f"storage: {{filesystem: {{rootdirectory: {storage}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: {REGISTRY}}}\n"
        )
        self.spawn("registry", ["docker-registry", "serve", config])
        self.wait_for("registry", lambda: answers(f"http://{REGISTRY}/v2/"))

    def ensure_base_image(self) -> None:
        """BASE_IMAGE in the engine: already there, pulled, or made here (debootstrap + pyenv's Python)."""
        if (
            subprocess.run(
                ["docker", "image", "inspect", BASE_IMAGE], check=False, capture_output=True, env=self.env
            ).returncode
            == 0
        ):
            return
        print(f"pulling {BASE_IMAGE}", flush=True)
        pulled = subprocess.run(
            ["docker", "pull", BASE_IMAGE], check=False, capture_output=True, env=self.env, timeout=600
        )
        if pulled.returncode == 0:
            return
        print(
            f"no registry serves {BASE_IMAGE}: making it from Debian bookworm and Python {PYTHON_VERSION}", flush=True
        )
        python = Path(run(["pyenv", "root"], "pyenv root").strip()) / "versions" / PYTHON_VERSION
        if not (python / "bin" / "python3.11").exists():
            raise ClusterError(f"the base image needs Python {PYTHON_VERSION}: `pyenv install {PYTHON_VERSION}` first")
        rootfs = self.folder / "rootfs"
        shutil.rmtree(rootfs, ignore_errors=True)
        run(["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", rootfs], "debootstrap")
        shutil.copytree(python, rootfs / "usr" / "local", dirs_exist_ok=True, symlinks=True,
                        ignore=lambda folder, names: [n for n in names if Path(folder).name == "site-packages"
                                                      and n not in ("pip", "pip-" + pip_version(python))])  # fmt: skip
        for script in (rootfs / "usr/local/bin").glob("pip*"):  # pyenv's shebangs name pyenv's folder
            script.write_text('#!/bin/sh\nexec python3.11 -m pip "$@"\n')
        extra = Path("/usr/local/share/ca-certificates")  # the machine's own CAs (a proxy's), if any
        if extra.is_dir():
            shutil.copytree(extra, rootfs / extra.relative_to("/"), dirs_exist_ok=True)
        run(["chroot", rootfs, "sh", "-c", "ldconfig && update-ca-certificates"], "the base image's ldconfig")
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        run(["docker", "import", "--change", "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
             "--change", "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "--change", 'CMD ["python3"]',
             "-", BASE_IMAGE], "docker import", stdin=tar.stdout, env=self.env)  # fmt: skip
        tar.wait()
        shutil.rmtree(rootfs)

    def ensure_node_environment(self) -> Path:
        python = self.folder / "venv" / "bin" / "python"
        if not python.exists():
            run([sys.executable, "-m", "uv", "venv", "-q", "--python", sys.executable, self.folder / "venv"], "uv venv")
            run([sys.executable, "-m", "uv", "pip", "install", "-q", "--python", python, *NODE_REQUIREMENTS],
                "installing kmock")  # fmt: skip
        return python

    def start_node(self) -> None:
        if self.pid("node"):
            return
        python = self.ensure_node_environment()
        self.spawn("node", [python, ROOT / "tools" / "cluster_node.py", "--port", API_PORT, "--state", self.folder])
        self.wait_for("node", lambda: answers(f"http://127.0.0.1:{API_PORT}/version"))

    def write_configuration(self) -> None:
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": CONTEXT, "cluster": {"server": f"http://127.0.0.1:{API_PORT}"}}],
            "users": [{"name": CONTEXT, "user": {}}],
            "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT}}],
            "current-context": CONTEXT,
        }
        (self.folder / "kubeconfig").write_text(json.dumps(kubeconfig, indent=2) + "\n")
        backend_config = {
            "kube-context": CONTEXT,
            "kube-job-template-path": str(ROOT / "kubernetes" / "job_template.yaml"),
            "repository-uri": REPOSITORY,
        }
        (self.folder / "kubernetes_config.json").write_text(json.dumps(backend_config, indent=2) + "\n")
        (self.folder / "env").write_text(
            f"export DOCKER_HOST={self.env['DOCKER_HOST']}\nexport KUBECONFIG={self.folder / 'kubeconfig'}\n"
        )

    def start(self) -> None:
        if os.geteuid() != 0:
            raise ClusterError("the cluster runs a Docker engine, which needs root")
        self.folder.mkdir(parents=True, exist_ok=True)
        install_packages()
        self.start_docker()
        self.start_registry()
        self.ensure_base_image()
        self.start_node()
        self.write_configuration()

    def stop(self) -> None:
        for name in PROCESSES:
            pid = self.pid(name)
            if pid is not None:
                os.killpg(pid, signal.SIGTERM)
                deadline = time.monotonic() + STOP_SECONDS
                while self.pid(name) and time.monotonic() < deadline:
                    time.sleep(0.2)
                if self.pid(name):
                    os.killpg(pid, signal.SIGKILL)
            self.pid_file(name).unlink(missing_ok=True)
        # The engine leaves its network namespace (and, if killed, containers' layers) mounted.
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in reversed(mounts):
            if mount.startswith(f"{self.folder}/"):
                subprocess.run(["umount", mount], check=False, capture_output=True)


def pip_version(python: Path) -> str:
    return next((python / "lib" / "python3.11" / "site-packages").glob("pip-*.dist-info")).name[4:]


def answers(url: str) -> bool:
    with contextlib.suppress(OSError, urllib.error.URLError), urllib.request.urlopen(url, timeout=2):
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--dir", type=Path, default=ROOT / ".cluster", help="the cluster's folder (default .cluster)")
    args = parser.parse_args(argv)
    cluster = Cluster(args.dir)
    try:
        if args.action == "start":
            cluster.start()
            print(
                f"cluster up: . {cluster.folder / 'env'}, then backend_config={cluster.folder / 'kubernetes_config.json'}"
            )
        else:
            cluster.stop()
            print("cluster stopped")
    except ClusterError as err:
        print(f"make cluster: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
