"""A team tracking server on this machine: PostgreSQL 15 as the backend store and `mlflow server`
serving (proxying) the artifacts, both on loopback.

    python -m tools.teamserver start [--dir .server] [--port 5000] [--artifacts-destination URI] [--auth]
    python -m tools.teamserver stop [--dir .server]
    python -m tools.teamserver status [--dir .server]

`make server` and `make server-stop` run these. Everything lives in `--dir` (git-ignored): the
PostgreSQL cluster (`postgres/`), the proxied artifacts (`artifacts/`, unless
`--artifacts-destination` names another store such as `s3://bucket/path`), the server's log
(`mlflow.log`), and `state.json` (ports and process ids). Data survive a stop; start again to resume.

PostgreSQL refuses to run as root: as root its programs run as the `postgres` user, which must be
able to reach `--dir`. Set MADNESS_BACKEND_STORE_URI to an existing database (postgresql://...) to
use it instead of starting PostgreSQL here. With `--auth` the server runs MLflow's basic-auth app;
the admin password is written to `admin_password` (mode 0600), never printed.

The tests start the same server through `TeamServer`, on free ports in a temporary folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BACKEND_ENV = "MADNESS_BACKEND_STORE_URI"
DB_USER = "mlflow"
DB_NAME = "mlflow"
AUTH_DB_NAME = "mlflow_auth"
ADMIN_USER = "admin"
SERVER_USER = "postgres"  # the account PostgreSQL runs as when we are root
HEALTH_TIMEOUT = 180.0
STATE_FILE = "state.json"


class ServerError(Exception):
    """A one-line reason the server could not start or stop."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl are: `pg_config --bindir`, else Debian's /usr/lib/postgresql/<n>/bin."""
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out:
            candidates.append(Path(out))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    return next((c for c in candidates if (c / "initdb").is_file() and (c / "pg_ctl").is_file()), None)


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], what: str, env: dict | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise ServerError(f"{what} failed: {detail[-1] if detail else f'exit {result.returncode}'}")
    return result.stdout


def _private_file(path: Path, text: str) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)


@dataclass
class Postgres:
    """A PostgreSQL cluster in `folder`, listening on 127.0.0.1:`port` only, password auth."""

    folder: Path
    port: int
    bindir: Path

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def password_file(self) -> Path:
        return self.folder / "password"

    def uri(self, database: str = DB_NAME) -> str:
        return f"postgresql://{DB_USER}:{self.password_file.read_text().strip()}@127.0.0.1:{self.port}/{database}"

    def _owned(self) -> None:
        """As root the cluster belongs to the postgres user, who must reach it through every parent folder."""
        if os.geteuid() != 0:
            return
        shutil.chown(self.folder, SERVER_USER, SERVER_USER)
        for path in self.folder.iterdir():
            shutil.chown(path, SERVER_USER, SERVER_USER)
        if subprocess.run(_as_server_user(["test", "-w", str(self.folder)]), check=False).returncode != 0:
            raise ServerError(
                f"PostgreSQL runs as user {SERVER_USER}, who cannot reach {self.folder} (a parent folder is "
                "private); give a folder it can reach, e.g. make server SERVER_DIR=/var/tmp/madness-server"
            )

    def init(self) -> None:
        if (self.data / "PG_VERSION").is_file():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        _private_file(self.password_file, secrets.token_urlsafe(24))
        self._owned()
        _run(
            _as_server_user(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    DB_USER,
                    "--auth=scram-sha-256",
                    f"--pwfile={self.password_file}",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ]
            ),
            "initdb",
        )

    def start(self) -> None:
        self._owned()
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        _run(
            _as_server_user(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.folder / "postgres.log"),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            f"starting PostgreSQL on port {self.port}",
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").is_file():
            _run(
                _as_server_user([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
                "stopping PostgreSQL",
            )

    def create_databases(self, *names: str) -> None:
        env = {**os.environ, "PGPASSWORD": self.password_file.read_text().strip()}
        for name in names:
            exists = _run(
                [
                    str(self.bindir / "psql"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    DB_USER,
                    "-d",
                    "postgres",
                    "-tAc",
                    f"SELECT 1 FROM pg_database WHERE datname = '{name}'",
                ],
                "listing databases",
                env,
            )
            if not exists.strip():
                _run(
                    [str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER, name],
                    f"creating database {name}",
                    env,
                )


@dataclass
class TeamServer:
    """PostgreSQL (or an existing database) plus `mlflow server`, started and stopped together."""

    folder: Path
    port: int = 5000
    artifacts_destination: str | None = None
    auth: bool = False
    serve_artifacts: bool = True  # False: clients write to default_artifact_root themselves (e.g. s3://)
    default_artifact_root: str | None = None
    backend_store_uri: str | None = None  # an existing database; None: a PostgreSQL cluster in folder
    workers: int = 2
    extra_env: dict = field(default_factory=dict)
    postgres: Postgres | None = field(default=None, init=False)
    process: subprocess.Popen | None = field(default=None, init=False)
    mlflow_pid: int | None = field(default=None, init=False)  # of a server started by another process (state.json)

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def artifacts(self) -> str:
        return self.artifacts_destination or str(self.folder / "artifacts")

    @property
    def log(self) -> Path:
        return self.folder / "mlflow.log"

    @property
    def admin_password(self) -> str:
        return (self.folder / "admin_password").read_text().strip()

    # --- PostgreSQL ---

    def start_postgres(self, port: int | None = None) -> None:
        if self.backend_store_uri:
            return
        bindir = postgres_bindir()
        if bindir is None:
            raise ServerError(
                f"PostgreSQL's server programs (initdb, pg_ctl) are not installed; install postgresql-15 "
                f"or set {BACKEND_ENV} to an existing database"
            )
        if self.postgres is None:
            self.postgres = Postgres(self.folder / "postgres", port or free_port(), bindir)
        self.postgres.init()
        self.postgres.start()
        self.postgres.create_databases(DB_NAME, AUTH_DB_NAME)

    def stop_postgres(self) -> None:
        if self.postgres is not None:
            self.postgres.stop()

    def store_uri(self, database: str = DB_NAME) -> str:
        return self.backend_store_uri or self.postgres.uri(database)

    # --- mlflow server ---

    def _auth_env(self) -> dict:
        """Return the environment for basic auth: users in their own database, a stable CSRF secret, the admin password generated once."""
        secret, password = self.folder / "flask_secret", self.folder / "admin_password"
        if not secret.is_file():
            _private_file(secret, secrets.token_hex(32))
        if not password.is_file():
            _private_file(password, secrets.token_urlsafe(18))
        auth_db = (
            self.store_uri(AUTH_DB_NAME) if not self.backend_store_uri else f"sqlite:///{self.folder / 'basic_auth.db'}"
        )
        ini = self.folder / "basic_auth.ini"
        # EDIT by default: a team shares its experiments (two people can run one sweep); admins can narrow it.
        _private_file(
            ini,
            "[mlflow]\ndefault_permission = EDIT\n"
            f"database_uri = {auth_db}\nadmin_username = {ADMIN_USER}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # Each request otherwise re-hashes the password (PBKDF2): a sweep's polling
            # slows to a crawl. A changed password reaches the other workers within 60 s.
            "auth_cache_ttl_seconds = 60\n",
        )
        return {
            "MLFLOW_AUTH_CONFIG_PATH": str(ini),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secret.read_text().strip(),
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.admin_password,
        }

    def start_mlflow(self) -> None:
        if port_in_use(self.port):
            raise ServerError(f"port {self.port} on 127.0.0.1 is in use; choose another (make server PORT=...)")
        command = [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            self.store_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        if self.serve_artifacts:
            if not self.artifacts_destination:
                Path(self.artifacts).mkdir(parents=True, exist_ok=True)
            command += ["--artifacts-destination", self.artifacts]
        else:
            command += ["--no-serve-artifacts", "--default-artifact-root", self.default_artifact_root]
        env = {**os.environ, **self.extra_env}
        if self.auth:
            command += ["--app-name", "basic-auth"]
            env.update(self._auth_env())
        # Its own session: stopping it stops its workers too, and a Ctrl-C in the caller's terminal does not.
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.folder, start_new_session=True
            )
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise ServerError(f"mlflow server exited with {self.process.returncode}: {tail[0]} (log: {self.log})")
            try:
                with urllib.request.urlopen(f"{self.tracking_uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        self.kill_mlflow()
        raise ServerError(
            f"mlflow server did not answer on {self.tracking_uri} within {HEALTH_TIMEOUT:.0f} s (log: {self.log})"
        )

    def kill_mlflow(self, sig: int = signal.SIGKILL) -> None:
        """End the server and its workers (the whole process group)."""
        pid = self.process.pid if self.process else None
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        if self.process is not None:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    # --- both ---

    def start(self) -> TeamServer:
        if port_in_use(self.port):
            raise ServerError(f"port {self.port} on 127.0.0.1 is in use; choose another (make server PORT=...)")
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self.start_postgres()
            self.start_mlflow()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            self.kill_mlflow(signal.SIGTERM)
        finally:
            self.stop_postgres()

    def __enter__(self) -> TeamServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what `make server` remembers between its invocations ---

    def save_state(self) -> None:
        state = {
            "port": self.port,
            "mlflow_pid": self.process.pid if self.process else self.mlflow_pid,
            "postgres_port": self.postgres.port if self.postgres else None,
            "auth": self.auth,
            "artifacts": self.artifacts,
            "backend_store_uri": bool(self.backend_store_uri),
        }
        _private_file(self.folder / STATE_FILE, json.dumps(state, indent=1))

    @classmethod
    def from_state(cls, folder: Path) -> TeamServer | None:
        path = folder / STATE_FILE
        if not path.is_file():
            return None
        state = json.loads(path.read_text())
        server = cls(folder, port=state["port"], auth=state["auth"])
        if state["postgres_port"]:
            bindir = postgres_bindir()
            server.postgres = Postgres(folder / "postgres", state["postgres_port"], bindir) if bindir else None
        server.mlflow_pid = state["mlflow_pid"]
        return server


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmd_start(args) -> int:
    folder = Path(args.dir).resolve()
    previous = TeamServer.from_state(folder)
    if previous is not None and _alive(previous.mlflow_pid):
        print(f"already running: export MLFLOW_TRACKING_URI={previous.tracking_uri}")
        return 0
    server = TeamServer(
        folder,
        port=args.port,
        artifacts_destination=args.artifacts_destination,
        auth=args.auth,
        backend_store_uri=os.environ.get(BACKEND_ENV) or None,
    )
    if previous is not None and previous.postgres is not None:
        server.postgres = previous.postgres  # the cluster keeps its port from one start to the next
    server.start()
    server.save_state()
    store = (
        f"PostgreSQL on 127.0.0.1:{server.postgres.port} (data in {server.postgres.data})"
        if server.postgres
        else f"the database in {BACKEND_ENV}"
    )
    print(f"backend store: {store}")
    print(f"mlflow server: {server.tracking_uri}, artifacts proxied to {server.artifacts}, log {server.log}")
    if server.auth:
        print(f"basic auth: user {ADMIN_USER}, password in {folder / 'admin_password'}; then")
        print(
            f'export MLFLOW_TRACKING_USERNAME={ADMIN_USER} MLFLOW_TRACKING_PASSWORD="$(cat {folder / "admin_password"})"'
        )
    print(f"export MLFLOW_TRACKING_URI={server.tracking_uri}")
    return 0


def cmd_stop(args) -> int:
    folder = Path(args.dir).resolve()
    server = TeamServer.from_state(folder)
    if server is None:
        print(f"no server state in {folder}: nothing to stop")
        return 0
    if _alive(server.mlflow_pid):
        os.killpg(server.mlflow_pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(server.mlflow_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(server.mlflow_pid):
            os.killpg(server.mlflow_pid, signal.SIGKILL)
    server.stop_postgres()
    print(f"stopped the server of {folder} (data kept)")
    return 0


def cmd_status(args) -> int:
    server = TeamServer.from_state(Path(args.dir).resolve())
    if server is None or not _alive(server.mlflow_pid):
        print("not running")
        return 1
    print(f"running: export MLFLOW_TRACKING_URI={server.tracking_uri}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.teamserver", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "stop", "status"):
        one = sub.add_parser(name)
        one.add_argument(
            "--dir", default=".server", help="folder for the cluster, artifacts, log and state (default .server)"
        )
        if name == "start":
            one.add_argument(
                "--port", type=int, default=5000, help="the mlflow server's port on 127.0.0.1 (default 5000)"
            )
            one.add_argument(
                "--artifacts-destination", default=None, help="where proxied artifacts go (default <dir>/artifacts)"
            )
            one.add_argument("--auth", action="store_true", help="run MLflow's basic-auth app")
    args = parser.parse_args(argv)
    try:
        return {"start": cmd_start, "stop": cmd_stop, "status": cmd_status}[args.command](args)
    except ServerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
