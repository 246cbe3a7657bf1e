"""Run workers of one host share one squeue (and at most one sacct) per poll interval."""

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dagster_slurm_launcher.slurm import JobState, SlurmClient, SubmittedJob
from dagster_slurm_launcher.slurm.shared_status import SharedStatus
from dagster_slurm_launcher.transport import LocalTransport, SSHTransport, Transport
from tests import lab

pytestmark = pytest.mark.lab

SLEEP = "#!/bin/bash\nsleep {}\n"


@pytest.fixture
def worker_status(
    tmp_path: Path, transport: Transport
) -> Iterator[Callable[[float], tuple[SharedStatus, lab.RecordingTransport]]]:
    """What each run worker of one host has: its own transport (an SSH login, or local), and the
    host's shared snapshot."""
    transports: list[lab.RecordingTransport] = []

    def make(max_age: float) -> tuple[SharedStatus, lab.RecordingTransport]:
        own = LocalTransport() if isinstance(transport, LocalTransport) else SSHTransport(lab.settings())
        transports.append(lab.RecordingTransport(own))
        return SharedStatus(SlurmClient(transports[-1]), tmp_path, "lab", max_age=max_age), transports[-1]

    yield make
    for transport in transports:
        transport.close()


def submit(client: SlurmClient, remote_dir: str, seconds: int, name: str) -> SubmittedJob:
    return client.submit(SLEEP.format(seconds), name, {"output": f"{remote_dir}/%j.out", "time": "00:05:00"})


def test_five_run_workers_polling_every_second_send_one_squeue_per_second_between_them(
    client: SlurmClient, remote_dir: str, worker_status: Callable
) -> None:
    jobs = [submit(client, remote_dir, 30, f"shared-{i}") for i in range(5)]
    workers = [worker_status(1.0) for _ in jobs]
    seen: dict[str, set[JobState]] = {j.job_id: set() for j in jobs}

    def poll_for(status: SharedStatus, job: SubmittedJob) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            seen[job.job_id].add(status.poll([job])[job.job_id].state)
            time.sleep(1.0)

    threads = [threading.Thread(target=poll_for, args=(s, j)) for (s, _), j in zip(workers, jobs, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.cancel([j.job_id for j in jobs])

    squeues = sum(transport.count("squeue") for _, transport in workers)
    assert squeues <= 12  # ten seconds at one per second; alone, each worker would send ten
    assert all(states and states <= {JobState.PENDING, JobState.RUNNING} for states in seen.values()), seen


def test_a_job_that_ended_is_reported_with_its_accounting(
    client: SlurmClient, remote_dir: str, worker_status: Callable
) -> None:
    job = submit(client, remote_dir, 1, "shared-ended")
    status, _ = worker_status(0.5)
    info = lab.wait_until(
        lambda: (i := status.poll([job])[job.job_id]).is_terminal and i.source == "sacct" and i, 120, what="ended"
    )
    assert info.state == JobState.COMPLETED and info.elapsed is not None and info.exit_code == (0, 0)
    # A second worker reads the accounting from the snapshot: no query of its own.
    other, other_transport = worker_status(60.0)
    assert other.poll([job])[job.job_id] == info
    assert other_transport.commands == []


def test_a_worker_polls_alone_while_another_holds_the_snapshot_too_long(
    client: SlurmClient, remote_dir: str, worker_status: Callable, tmp_path: Path
) -> None:
    job = submit(client, remote_dir, 30, "shared-stuck")
    status, transport = worker_status(0.5)
    status.poll([job])
    fd = os.open(next(tmp_path.glob("status-*.lock")), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a partner stuck in a query
    try:
        started = time.monotonic()
        info = status.poll([job])[job.job_id]
        waited = time.monotonic() - started
    finally:
        os.close(fd)
        client.cancel([job.job_id])
    assert info.state in (JobState.PENDING, JobState.RUNNING)
    assert transport.count("squeue") == 2  # the second time on its own
    assert waited >= 3 * 0.5  # it gave the partner three snapshot ages first


def test_a_control_folder_others_may_write_in_is_not_used_to_share(
    client: SlurmClient, remote_dir: str, worker_status: Callable, tmp_path: Path
) -> None:
    tmp_path.chmod(0o777)  # another user could forge the snapshot, or plant a symlink
    job = submit(client, remote_dir, 30, "shared-unsafe")
    status, transport = worker_status(0.5)
    try:
        info = status.poll([job])[job.job_id]
    finally:
        client.cancel([job.job_id])
    assert info.state in (JobState.PENDING, JobState.RUNNING)
    assert list(tmp_path.glob("status-*")) == [] and transport.count("squeue") == 1
