"""A persistent deployment for tests, as a site runs one: dagster.yaml.example on the lab's
PostgreSQL, a dagster-daemon, the code location from a Python file or a gRPC code server, and
(for the UI's tests) a dagster-webserver."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus

from dagster_slurm_launcher.launcher.process import LOG_TAG, PID_TAG
from tests import lab

EXAMPLE = Path(__file__).parent.parent / "dagster.yaml.example"
BIN = Path(sys.executable).parent


@dataclass
class Deployment:
    home: Path
    workspace: Path
    instance: DagsterInstance
    daemon: subprocess.Popen | None = None
    webserver_url: str | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DAGSTER_HOME": str(self.home)}

    def start_daemon(self) -> None:
        log = open(self.home / "daemon.log", "ab")  # noqa: SIM115  # the daemon's for its lifetime
        self.daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(self.workspace)],
            env=self.env,
            stdout=log,
            stderr=log,
            cwd=self.workspace.parent,
        )

    def stop_daemon(self, sig: int = signal.SIGTERM) -> None:
        assert self.daemon is not None
        self.daemon.send_signal(sig)
        self.daemon.wait(timeout=60)
        self.daemon = None

    def dagster(self, *args: str) -> None:
        subprocess.run(
            [str(BIN / "dagster"), *args, "-w", str(self.workspace)], env=self.env, check=True, capture_output=True
        )

    def launch(self, job: str) -> str:
        self.dagster("job", "launch", "-j", job)
        return self.instance.get_runs(limit=1)[0].run_id

    def run(self, run_id: str):
        return self.instance.get_run_by_id(run_id)

    def wait_for_status(self, run_id: str, statuses: set[DagsterRunStatus], timeout: float = 300) -> DagsterRunStatus:
        def reached() -> DagsterRunStatus | None:
            status = self.run(run_id).status
            return status if status in statuses else None

        try:
            return lab.wait_until(reached, timeout, what=f"run {run_id} in {statuses}")  # type: ignore[return-value]
        except AssertionError:
            print((self.home / "daemon.log").read_text()[-5000:])
            log = self.run(run_id).tags.get(LOG_TAG)
            if log and Path(log).exists():
                print(Path(log).read_text()[-5000:])
            raise

    def worker_pid(self, run_id: str) -> int:
        return int(self.run(run_id).tags[PID_TAG])


def deployment_config(
    *, database: str, monitoring: bool, retries: bool, max_concurrent_runs: int, heartbeat_timeout: float
) -> dict:
    """dagster.yaml.example as written (PostgreSQL, from DAGSTER_PG_* as a site sets them), in a
    database of the test's own, with the lab's settings from the environment."""
    config = yaml.safe_load(EXAMPLE.read_text())
    config["storage"]["postgres"]["postgres_db"]["db_name"] = database
    config["run_launcher"]["config"]["executor"] = {"poll_interval": 1.0, "time": "00:10:00"}
    config["run_launcher"]["config"]["worker_heartbeat_timeout"] = heartbeat_timeout
    config["run_coordinator"]["config"].update(dequeue_interval_seconds=1, max_concurrent_runs=max_concurrent_runs)
    config["run_monitoring"].update(enabled=monitoring, poll_interval_seconds=2)
    config["run_retries"]["enabled"] = retries
    return config


@pytest.fixture
def deploy(tmp_path: Path, code_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    deployments: list[Deployment] = []
    # The database password, from the lab's 0600 file, for this test's processes only (the
    # cluster user's processes, which tests start with runuser, never see it).
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", Path(os.environ["DAGSTER_PG_PASSWORD_FILE"]).read_text().strip())

    def make(
        *,
        monitoring: bool = True,
        retries: bool = False,
        max_concurrent_runs: int = 20,
        heartbeat_timeout: float = 300,
        code_server: bool = False,
        webserver: bool = False,
    ) -> Deployment:
        home = tmp_path / "dagster_home"
        home.mkdir(mode=0o700)
        config = deployment_config(
            database=databases.enter_context(lab.postgres_database()),
            monitoring=monitoring,
            retries=retries,
            max_concurrent_runs=max_concurrent_runs,
            heartbeat_timeout=heartbeat_timeout,
        )
        if webserver:
            config["nux"] = {"enabled": False}  # no "join the community" dialog over the run page
        (home / "dagster.yaml").write_text(yaml.safe_dump(config))
        location = {"python_file": {"relative_path": "deployment.py", "working_directory": str(code_dir)}}
        if code_server:
            port = processes.enter_context(start_code_server(code_dir, home))
            location = {"grpc_server": {"host": "127.0.0.1", "port": port, "location_name": "deployment"}}
        workspace = code_dir / "workspace.yaml"
        workspace.write_text(yaml.safe_dump({"load_from": [location]}))
        d = Deployment(home, workspace, DagsterInstance.from_config(str(home)))
        deployments.append(d)
        d.start_daemon()
        if webserver:
            d.webserver_url = processes.enter_context(start_webserver(workspace, home))
        return d

    with contextlib.ExitStack() as databases, contextlib.ExitStack() as processes:
        yield make
        for d in deployments:
            if d.daemon is not None:
                d.stop_daemon()
            d.instance.dispose()


@contextlib.contextmanager
def start_code_server(code_dir: Path, home: Path) -> Iterator[int]:
    """A gRPC code server for ``deployment.py``, as a site runs one: its port."""
    port = free_port()
    dagster = str(BIN / "dagster")
    argv = [dagster, "code-server", "start", "-h", "127.0.0.1", "-p", str(port), "-f", "deployment.py"]
    health = [dagster, "api", "grpc-health-check", "-p", str(port)]
    with serving(
        [*argv, "--working-directory", str(code_dir)],
        code_dir,
        home,
        "code-server.log",
        ready=lambda: subprocess.run(health, capture_output=True).returncode == 0,
    ):
        yield port


@contextlib.contextmanager
def start_webserver(workspace: Path, home: Path) -> Iterator[str]:
    """dagster-webserver on a free loopback port, as a site runs it: its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(workspace)]
    with serving(argv, workspace.parent, home, "webserver.log", ready=lambda: answers(f"{url}/server_info")):
        yield url


@contextlib.contextmanager
def serving(argv: list[str], cwd: Path, home: Path, log_name: str, ready: Callable[[], bool]) -> Iterator[None]:
    """A server of the deployment in ``home``, logging there, from ``ready`` until stopped."""
    with open(home / log_name, "ab") as log:
        server = subprocess.Popen(argv, cwd=cwd, env={**os.environ, "DAGSTER_HOME": str(home)}, stdout=log, stderr=log)
        try:
            lab.wait_until(ready, 120, what=log_name)
            yield
        finally:
            server.terminate()
            server.wait(timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except OSError:
        return False
