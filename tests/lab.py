"""Access to the lab cluster from tests: its settings, its daemons, and its counters."""

import contextlib
import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dagster_slurm_launcher import SlurmSettings, load_settings
from dagster_slurm_launcher.slurm import JobState
from dagster_slurm_launcher.transport import CommandResult, Transport

REPO = Path(__file__).resolve().parents[1]


def settings(**overrides: object) -> SlurmSettings:
    if "DAGSTER_SLURM_LAB_DIR" not in os.environ:
        pytest.fail("the lab cluster's settings are missing: run `sudo deploy/lab/up` and `source deploy/lab/lab.env`")
    return load_settings(**overrides)


def lab_dir() -> Path:
    return Path(os.environ["DAGSTER_SLURM_LAB_DIR"])


def restart(daemon: str, down_for: float = 0) -> None:
    """Restart a lab daemon (root only), as a failure would."""
    subprocess.run(
        ["bash", str(REPO / "deploy/lab/restart"), daemon, "--down-for", str(down_for)], check=True, capture_output=True
    )


def restart_in_background(daemon: str, down_for: float) -> threading.Thread:
    """Restart ``daemon``, returning once it is down (its pid file gone) and the restart goes on."""
    thread = threading.Thread(target=restart, args=(daemon, down_for))
    thread.start()
    wait_until(lambda: not (lab_dir() / "run" / f"{daemon}.pid").exists(), 30, interval=0.05, what=f"{daemon} down")
    return thread


@contextlib.contextmanager
def login_node_tmp_full() -> Iterator[None]:
    """Meanwhile, ``/tmp`` on the login node (the sshd's mount namespace, root only) is full."""
    sshd = (lab_dir() / "run" / "sshd.pid").read_text().strip()
    if os.readlink(f"/proc/{sshd}/ns/mnt") == os.readlink("/proc/self/ns/mnt"):
        pytest.skip(
            "the login node shares this machine's mount namespace (LAB_FS_CACHE=off): its /tmp cannot be filled alone"
        )
    in_login_node = ["nsenter", "-t", sshd, "-m", "--"]
    subprocess.run([*in_login_node, "mount", "-t", "tmpfs", "-o", "size=16k", "lab-full-tmp", "/tmp"], check=True)
    try:
        subprocess.run([*in_login_node, "dd", "if=/dev/zero", "of=/tmp/fill", "bs=4k", "count=8"], capture_output=True)
        yield
    finally:
        subprocess.run([*in_login_node, "umount", "--lazy", "/tmp"], check=True)


def sshd_logins() -> int:
    """Successful logins sshd has logged, read on the server side."""
    return (lab_dir() / "log/sshd.log").read_text().count("Accepted publickey for")


def controller_job_info_rpcs() -> int:
    """REQUEST_JOB_INFO(_SINGLE) RPCs slurmctld has served (sdiag): ``squeue --jobs`` and scontrol
    calls. Not ``squeue --user`` (REQUEST_JOB_USER_INFO), which run workers share."""
    out = subprocess.run(["sdiag"], check=True, capture_output=True, text=True).stdout
    return sum(int(n) for n in re.findall(r"REQUEST_JOB_INFO(?:_SINGLE)?\s+\(\s*\d+\)\s+count:(\d+)", out))


def dbd_job_queries() -> int | None:
    """DBD_GET_JOBS_COND requests slurmdbd has served (sacct calls); None unless an operator asks."""
    if os.getuid() != 0:
        return None  # slurmdbd logs a security violation for anyone else
    out = subprocess.run(["sacctmgr", "show", "stats"], capture_output=True, text=True).stdout
    match = re.search(r"DBD_GET_JOBS_COND\s+\(\s*\d+\)\s+count:(\d+)", out)
    if "Remote Procedure Call statistics" not in out:
        return None
    return int(match.group(1)) if match else 0


def wait_until(
    condition: Callable[[], object], timeout: float, interval: float = 1.0, what: str = "condition"
) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(interval)


class RecordingTransport(Transport):
    """Forwards to a real transport and remembers each command, to count what the client sends."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.commands: list[str] = []

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float = 600.0) -> CommandResult:
        self.commands.append(command)
        return self.inner.run(command, stdin=stdin, timeout=timeout)

    def close(self) -> None:
        self.inner.close()

    def count(self, program: str) -> int:
        return sum(1 for c in self.commands if re.match(rf"(TZ=UTC )?{program}\b", c))


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (the lab's one node); a zombie does not."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def shared_dir() -> Path:
    return Path(os.environ["DAGSTER_SLURM_LAB_SHARED_DIR"])


def cluster_user_can_read(path: Path) -> bool:
    user = os.environ["DAGSTER_SLURM_LAB_USER"]
    return subprocess.run(["runuser", "-u", user, "--", "test", "-r", str(path)]).returncode == 0


def slurm_jobs_of_run(root_run_id: str) -> list[dict[str, str]]:
    """Every Slurm job (sacct, all states) whose name says it belongs to the root run."""
    out = subprocess.run(
        [
            "sacct",
            "--allusers",
            "-X",
            "-P",
            "-n",
            "-D",
            "--starttime=now-1days",
            "--format=JobID,JobName,State,AllocCPUS,ReqMem,Timelimit,Partition,ExitCode,NodeList",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    keys = ["job_id", "name", "state", "cpus", "req_mem", "time_limit", "partition", "exit_code", "node"]
    rows = [dict(zip(keys, line.split("|"), strict=True)) for line in out.splitlines() if line]
    return [r for r in rows if r["name"].startswith(f"dagster-{root_run_id}-")]


def settled_jobs_of_run(root_run_id: str, at_least: int, timeout: float = 60) -> list[dict[str, str]]:
    """The run's jobs once accounting lists at least ``at_least`` of them and all have ended.

    A run ends when its last step's outcome is relayed; that step's job may still be exiting.
    """

    def settled() -> list[dict[str, str]] | None:
        jobs = slurm_jobs_of_run(root_run_id)
        return (
            jobs
            if len(jobs) >= at_least and all(JobState.parse(j["state"].split()[0])[0].is_terminal for j in jobs)
            else None
        )

    return wait_until(settled, timeout, what=f"{at_least} ended Slurm jobs for run {root_run_id}")  # type: ignore[return-value]


def start_run_worker(
    instance,
    code: Path,
    job: str,
    resume_run_id: str | None = None,
    *,
    reexecute_from_failure_of: str | None = None,
    reexecute_all_of: str | None = None,
    submit_hook: str | None = None,
) -> subprocess.Popen:
    """A run worker in its own process (so that a test can kill it), on ``instance``.

    It runs ``job``, resumes ``resume_run_id``, re-executes ``reexecute_from_failure_of`` from
    failure (what run_retries and the UI's "re-execute from failure" do) or every step of
    ``reexecute_all_of``. ``submit_hook`` wraps the Slurm client's real submission: ``kill``
    SIGKILLs the worker as soon as sbatch returned, ``uncertain`` loses sbatch's answer (as a
    dropped connection does), ``phantom`` cancels the job and tracks an id no Slurm query knows
    (with a 5 s grace for unknown jobs), ``barrier:<dir>:<n>`` waits until ``n`` workers are about to submit.
    """
    import sys

    from dagster._serdes import serialize_value

    if resume_run_id:
        mode = f"resume:{resume_run_id}"
    elif reexecute_from_failure_of:
        mode = f"reexecute:{reexecute_from_failure_of}"
    elif reexecute_all_of:
        mode = f"reexecute-all:{reexecute_all_of}"
    else:
        mode = "run:"
    # By path, from the caller's working directory: the job's code location takes it as its own.
    argv = [
        sys.executable,
        str(REPO / "tests" / "run_worker.py"),
        serialize_value(instance.get_ref()),
        str(code),
        job,
        mode,
    ]
    return subprocess.Popen(argv, env={**os.environ, "LAB_SUBMIT_HOOK": submit_hook or ""})


def job_of_step(root_run_id: str, step_key: str, states: set[str]) -> dict[str, str] | None:
    """The step's newest Slurm job if it is in one of ``states`` (sacct)."""
    from dagster_slurm_launcher.naming import job_name

    jobs = [j for j in slurm_jobs_of_run(root_run_id) if j["name"] == job_name(root_run_id, step_key)]
    return jobs[-1] if jobs and jobs[-1]["state"].split()[0] in states else None


def packed_journals(run_id: str, step_key: str) -> bytes:
    """What the step's journals in the run's packs hold (read on the cluster's filesystem; the
    packed test jobs keep their run folders)."""
    import glob

    folders = f"{settings().remote_base_dir}/runs/{run_id}/{run_id}/pack.*/{step_hash(step_key)}.*"
    return b"".join(Path(p).read_bytes() for p in glob.glob(f"{folders}/events.jsonl"))


def step_hash(step_key: str) -> str:
    from dagster_slurm_launcher.naming import step_hash as hash_of

    return hash_of(step_key)


def cluster_user() -> str:
    return os.environ["DAGSTER_SLURM_LAB_USER"]


def run_as_cluster_user(argv: list[str], check: bool = True) -> str:
    user = cluster_user()
    return subprocess.run(["runuser", "-u", user, "--", *argv], check=check, capture_output=True, text=True).stdout


def adoptions(instance, run_id: str) -> list[str]:
    """The run's 'Adopted Slurm job ...' engine events, as their messages."""
    from dagster import DagsterEventType

    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT).records
    messages = [r.event_log_entry.dagster_event.message or "" for r in records]
    return [m for m in messages if "Adopted Slurm job" in m]


def jobs_of_step(root_run_id: str, step_key: str, at_least: int = 1) -> list[dict[str, str]]:
    """The step's Slurm jobs across the lineage, oldest first, once the run's ``at_least`` jobs all ended."""
    return [j for j in settled_jobs_of_run(root_run_id, at_least) if j["name"].endswith(step_hash(step_key))]


def signal_worker_while_step_runs(instance, code: Path, job: str, sig: int, step_key: str = "slow_step") -> str:
    """Start a run worker for ``job``, send it ``sig`` once ``step_key``'s job runs, wait for it
    to end; the run's id."""
    worker = start_run_worker(instance, code, job)
    try:
        run = wait_until(lambda: next(iter(instance.get_runs()), None), timeout=60, what="run created")
        wait_until(lambda: job_of_step(run.run_id, step_key, {"RUNNING"}), timeout=120, what=f"{step_key} running")
        worker.send_signal(sig)
        worker.wait(timeout=60)
    finally:
        worker.kill()
    return run.run_id


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty database on the lab's PostgreSQL for one deployment, dropped afterwards."""
    import psycopg2

    name = f"test_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(
        host=os.environ["DAGSTER_PG_HOST"],
        user=os.environ["DAGSTER_PG_USER"],
        password=os.environ["DAGSTER_PG_PASSWORD"],
        dbname="dagster",
    )
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield name
    finally:
        with conn.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()
