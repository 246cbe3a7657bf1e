"""The Slurm client against the lab's real slurmctld and slurmdbd, over SSH and locally."""

import dataclasses
import hashlib
import shlex
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from dagster_slurm_launcher.naming import job_name
from dagster_slurm_launcher.slurm import (
    AlreadySubmitted,
    Claim,
    JobInfo,
    JobRequest,
    JobState,
    SlurmClient,
    SlurmError,
    SubmissionUncertain,
    SubmittedJob,
)
from dagster_slurm_launcher.transport import CommandInterrupted, CommandResult, SSHTransport, Transport
from tests import lab

pytestmark = pytest.mark.lab


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_finished(client: SlurmClient, jobs: list[SubmittedJob], timeout: float = 120) -> dict[str, JobInfo]:
    def finished() -> dict[str, JobInfo] | None:
        states = client.poll(jobs)
        return states if all(_ended(info) for info in states.values()) else None

    return lab.wait_until(finished, timeout, what="jobs finished")


def _ended(info: JobInfo) -> bool:
    # slurmdbd can show a completed job's line before its batch step's, which says how the
    # script ended (a job cancelled while pending has no batch step).
    batch_known = info.state != JobState.COMPLETED or info.source != "sacct" or info.batch_state is not None
    return info.is_terminal and batch_known


def test_a_finished_job_reports_its_accounting(client: SlurmClient, remote_dir: str) -> None:
    script = (
        "#!/bin/bash\npython3 -c 'b = bytearray(150_000_000); import time; t = time.time()\n"
        "while time.time() - t < 4: pass'\n"
    )
    job = client.submit(
        script,
        unique("metrics"),
        {"cpus_per_task": 2, "mem": "400M", "time": "00:05:00", "output": f"{remote_dir}/%j.out"},
    )
    info = wait_finished(client, [job])[job.job_id]
    assert info.succeeded and info.source == "sacct"
    assert info.exit_code == (0, 0) and info.batch_state == JobState.COMPLETED
    assert info.node_list and info.alloc_cpus == 2 and "cpu=2" in info.req_tres and "mem=400M" in info.alloc_tres
    assert info.max_rss_bytes and info.max_rss_bytes > 100_000_000
    assert info.elapsed and info.elapsed >= timedelta(seconds=3)
    assert 0 < info.cpu_efficiency <= 1 and info.node_hours > 0
    assert info.time_limit == "00:05:00" and info.submit_time <= info.start_time <= info.end_time


def test_a_failing_job_reports_its_exit_code(client: SlurmClient, remote_dir: str) -> None:
    job = client.submit("#!/bin/bash\nexit 3\n", unique("fails"), {"output": f"{remote_dir}/%j.out"})
    info = wait_finished(client, [job])[job.job_id]
    assert (info.state, info.exit_code, info.succeeded) == (JobState.FAILED, (3, 0), False)


def test_sbatch_errors_reach_the_user(client: SlurmClient) -> None:
    with pytest.raises(SlurmError, match=r"sbatch rejected job 'bad-partition'.*invalid partition"):
        client.submit("#!/bin/bash\ntrue\n", "bad-partition", {"partition": "no-such-partition"})


def request(remote_dir: str, name: str, script: str = "#!/bin/bash\ntrue\n", **options: object) -> JobRequest:
    folder = f"{remote_dir}/{name}"
    return JobRequest(
        name=name,
        options={"output": f"{folder}/out", "chdir": folder, **options},
        claim=Claim(f"{remote_dir}/claims", frozenset()),
        folder=folder,
        files={"job.sh": script.encode(), "data": bytes(range(256)) * 800},  # 200 KiB, more than a pipe holds
        script="job.sh",
        empty=("journal",),
    )


def test_many_jobs_are_written_and_submitted_in_one_command(
    client: SlurmClient, recorder: lab.RecordingTransport, remote_dir: str
) -> None:
    requests = [request(remote_dir, unique("many"), f"#!/bin/bash\necho {i}\n") for i in range(20)]
    outcomes = client.submit_all(requests)
    assert len(recorder.commands) == 1
    assert all(isinstance(o, SubmittedJob) for o in outcomes)
    finished = wait_finished(client, outcomes)
    assert all(finished[job.job_id].succeeded for job in outcomes)
    first = requests[0].folder
    listing = client.transport.run(
        f"cd {shlex.quote(first)} && stat -c '%a %n %s' . data job.sh journal && cat out && sha256sum < data"
    ).stdout.splitlines()
    script_size = len(requests[0].files["job.sh"])
    assert listing[:5] == ["700 . 4096", "600 data 204800", f"600 job.sh {script_size}", "600 journal 0", "0"]
    assert listing[5].split()[0] == hashlib.sha256(bytes(range(256)) * 800).hexdigest()
    assert [client.transport.run(f"cat {shlex.quote(r.folder)}/out").stdout for r in requests] == [
        f"{i}\n" for i in range(20)
    ]


def test_a_rejected_job_does_not_stop_the_others(
    client: SlurmClient, recorder: lab.RecordingTransport, remote_dir: str
) -> None:
    requests = [
        request(remote_dir, unique("before")),
        request(remote_dir, unique("rejected"), partition="no-such-partition"),
        request(remote_dir, unique("after")),
    ]
    before, rejected, after = client.submit_all(requests)
    assert len(recorder.commands) == 1
    assert isinstance(before, SubmittedJob) and isinstance(after, SubmittedJob)
    assert type(rejected) is SlurmError and "invalid partition" in str(rejected)
    assert all(info.succeeded for info in wait_finished(client, [before, after]).values())


def test_a_job_another_submitter_claimed_is_not_submitted_and_its_files_are_appended_to_not_emptied(
    client: SlurmClient, remote_dir: str
) -> None:
    first = request(remote_dir, unique("claimed"))
    [job] = client.submit_all([first])
    client.transport.run(f"echo line >> {shlex.quote(first.folder)}/journal")
    [again] = client.submit_all([first])  # a submitter that never saw the job
    assert isinstance(again, AlreadySubmitted) and again.job_id == job.job_id
    assert client.transport.run(f"cat {shlex.quote(first.folder)}/journal").stdout == "line\n"
    wait_finished(client, [job])


def test_a_job_whose_folder_cannot_be_written_is_named_and_the_others_go_on(
    client: SlurmClient, recorder: lab.RecordingTransport, remote_dir: str
) -> None:
    client.transport.run(f"touch {shlex.quote(remote_dir)}/a-file")
    blocked = request(remote_dir, unique("blocked"))
    blocked = dataclasses.replace(blocked, folder=f"{remote_dir}/a-file/below")
    before, failed, after = client.submit_all(
        [request(remote_dir, unique("before")), blocked, request(remote_dir, unique("after"))]
    )
    assert type(failed) is SlurmError and "could not be written" in str(failed) and "File exists" in str(failed)
    assert isinstance(before, SubmittedJob) and isinstance(after, SubmittedJob)
    assert len(recorder.commands) == 2  # the one submitting, and the test's own touch
    wait_finished(client, [before, after])


def test_a_job_whose_claim_could_not_be_recorded_is_uncertain_never_rejected(
    client: SlurmClient, remote_dir: str
) -> None:
    # sbatch accepts the job, then the claim's record cannot be written: the job exists, and a
    # caller that took the failure for a refusal would submit it again.
    unrecorded = request(remote_dir, unique("unrecorded"))
    client.transport.run(f"mkdir -p {shlex.quote(unrecorded.claim.directory)}/{unrecorded.name}.new")
    since = datetime.now(UTC) - timedelta(minutes=1)
    [outcome] = client.submit_all([unrecorded])
    assert type(outcome) is SubmissionUncertain and "exit status 1" in str(outcome)
    [job] = client.find_by_name([unrecorded.name], since)[unrecorded.name]
    wait_finished(client, [SubmittedJob(job.job_id, job.name, since)])


class AnswerLost(Transport):
    """Runs each command, then loses its answer, as a connection that drops at the end does."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float = 600.0) -> CommandResult:
        self._transport.run(command, stdin=stdin, timeout=timeout)
        raise CommandInterrupted("connection lost after the command ran")


def test_jobs_whose_answer_was_lost_are_uncertain_and_each_exists_once(
    client: SlurmClient, transport: Transport, remote_dir: str
) -> None:
    requests = [request(remote_dir, unique("lost")) for _ in range(3)]
    since = datetime.now(UTC) - timedelta(minutes=1)
    outcomes = SlurmClient(AnswerLost(transport)).submit_all(requests)
    assert all(type(o) is SubmissionUncertain for o in outcomes)
    found = client.find_by_name([r.name for r in requests], since)
    assert sorted(len(found.get(r.name, [])) for r in requests) == [1, 1, 1]


def test_jobs_sent_while_slurmctld_is_down_are_submitted_once_it_is_back(
    client: SlurmClient, recorder: lab.RecordingTransport, transport: Transport, remote_dir: str
) -> None:
    if not isinstance(transport, SSHTransport):
        pytest.skip("restarting daemons needs root; the SSH run has it")
    requests = [request(remote_dir, unique("while-down")) for _ in range(3)]
    restarting = lab.restart_in_background("slurmctld", down_for=15)
    outcomes = client.submit_all(requests)
    restarting.join()
    assert all(isinstance(o, SubmittedJob) for o in outcomes)
    assert len([c for c in recorder.commands if "submit_jobs" in c]) > 1  # sent again after the outage
    assert all(info.succeeded for info in wait_finished(client, outcomes).values())
    found = client.find_by_name([r.name for r in requests], min(o.submitted_after for o in outcomes))
    assert [len(found[r.name]) for r in requests] == [1, 1, 1]


def test_hundreds_of_jobs_are_submitted_in_two_commands_and_polled_in_one(
    client: SlurmClient, recorder: lab.RecordingTransport, remote_dir: str
) -> None:
    # A fan-out's leaves, each a job of its own; held, they never start (the submission would
    # compete with its own jobs for the lab's cores).
    requests = [
        dataclasses.replace(request(remote_dir, unique("hundreds"), hold=True), files={"job.sh": b"#!/bin/bash\n"})
        for _ in range(250)
    ]
    jobs = client.submit_all(requests)
    try:
        assert all(isinstance(job, SubmittedJob) for job in jobs) and len({job.job_id for job in jobs}) == 250
        assert len(recorder.commands) == 2  # SUBMIT_BATCH jobs per command
        recorder.commands.clear()
        states = client.poll(jobs)
        assert len(states) == 250 and {info.state.value for info in states.values()} == {"PENDING"}
        assert recorder.count("squeue") == 1
    finally:
        client.cancel([job.job_id for job in jobs if isinstance(job, SubmittedJob)])


def test_thousands_of_names_are_looked_up_in_a_few_calls_under_the_argument_limit(
    client: SlurmClient, recorder: lab.RecordingTransport, remote_dir: str
) -> None:
    # 2,500 of the executor's job names (61 bytes each): 150 KB in one --name argument would
    # pass the kernel's 128 KiB limit on one argument. A resumed run looks up every step of its
    # plan at once.
    since = datetime.now(UTC) - timedelta(minutes=1)
    root = str(uuid.uuid4())
    names = [job_name(root, f"step_{i}") for i in range(2500)]
    outcomes = client.submit_all([request(remote_dir, name) for name in names[1000:1002]])
    wait_finished(client, outcomes)
    recorder.commands.clear()
    found = client.find_by_name(names, since)
    assert sorted(found) == sorted(names[1000:1002])
    assert recorder.count("squeue") == 5 and recorder.count("sacct") == 5


def test_fifty_jobs_are_polled_with_a_bounded_number_of_slurm_calls(
    client: SlurmClient, recorder: lab.RecordingTransport, remote_dir: str
) -> None:
    jobs = [
        client.submit("#!/bin/bash\nsleep 6\n", unique("fifty"), {"output": f"{remote_dir}/%j.out", "time": "00:05:00"})
        for _ in range(50)
    ]
    # What one poll costs, measured at the controller (sdiag) and, where readable, at slurmdbd.
    costs = {}
    for count in (5, 50):
        rpcs, dbd = lab.controller_job_info_rpcs(), lab.dbd_job_queries()
        recorder.commands.clear()
        client.poll(jobs[:count])
        costs[count] = (lab.controller_job_info_rpcs() - rpcs, None if dbd is None else lab.dbd_job_queries() - dbd)
        assert recorder.count("squeue") == 1 and recorder.count("sacct") <= 1
    # sdiag itself is not a REQUEST_JOB_INFO; a poll is one such RPC however many jobs it covers.
    assert costs[5][0] == costs[50][0] == 1
    assert costs[5][1] == costs[50][1]

    client.cancel([j.job_id for j in jobs[:10]])
    states = wait_finished(client, jobs)
    assert {states[j.job_id].state for j in jobs[:10]} == {JobState.CANCELLED}
    assert all(states[j.job_id].succeeded for j in jobs[10:])
    assert all(states[j.job_id].elapsed is not None for j in jobs[10:])


def test_every_sacct_query_is_bounded_by_a_start_time(
    client: SlurmClient, recorder: lab.RecordingTransport, remote_dir: str
) -> None:
    job = client.submit("#!/bin/bash\ntrue\n", unique("bounded"), {"output": f"{remote_dir}/%j.out"})
    wait_finished(client, [job])
    client.find_by_name([job.name], job.submitted_after)
    sacct = [c for c in recorder.commands if c.startswith("TZ=UTC sacct")]
    assert sacct and all("--starttime=" in c for c in sacct)


def test_jobs_are_found_by_name_after_the_controller_forgot_them(
    client: SlurmClient, transport: Transport, remote_dir: str
) -> None:
    name = unique("by-name")
    first = client.submit("#!/bin/bash\ntrue\n", name, {"output": f"{remote_dir}/%j.out"})
    second = client.submit("#!/bin/bash\nexit 1\n", name, {"output": f"{remote_dir}/%j.out"})
    wait_finished(client, [first, second])
    # Past MinJobAge the controller purges finished jobs: only accounting knows them.
    lab.wait_until(
        lambda: (
            transport.run(f"squeue --noheader --states=all --jobs={first.job_id},{second.job_id}").stdout.strip() == ""
        ),
        timeout=180,
        interval=3,
        what="slurmctld purged the jobs",
    )
    found = client.find_by_name([name, unique("never-submitted")], first.submitted_after)
    assert list(found) == [name]
    assert [(j.job_id, j.state, j.source) for j in found[name]] == [
        (second.job_id, JobState.FAILED, "sacct"),
        (first.job_id, JobState.COMPLETED, "sacct"),
    ]


def test_a_running_job_is_found_by_name(client: SlurmClient, remote_dir: str) -> None:
    job = client.submit("#!/bin/bash\nsleep 30\n", unique("running"), {"output": f"{remote_dir}/%j.out"})
    try:

        def running() -> dict[str, list[JobInfo]] | None:
            found = client.find_by_name([job.name], job.submitted_after)
            return found if found and found[job.name][0].state == JobState.RUNNING else None

        found = lab.wait_until(running, timeout=60, what="job running")
        assert [j.job_id for j in found[job.name]] == [job.job_id] and found[job.name][0].source == "squeue"
    finally:
        client.cancel([job.job_id])


def test_a_job_nobody_knows_is_unknown_not_finished(client: SlurmClient) -> None:
    ghost = SubmittedJob("99999999", "ghost", datetime.now(UTC))
    assert client.poll([ghost])["99999999"].state == JobState.UNKNOWN


def test_a_reused_job_id_is_not_taken_for_the_job(client: SlurmClient, remote_dir: str) -> None:
    old = client.submit("#!/bin/bash\ntrue\n", unique("old"), {"output": f"{remote_dir}/%j.out"})
    wait_finished(client, [old])
    # The same id, as if the counter had wrapped and this were a job submitted tomorrow.
    tomorrow = SubmittedJob(old.job_id, old.name, old.submitted_after + timedelta(days=1))
    assert client.poll([tomorrow])[old.job_id].state == JobState.UNKNOWN


def test_cancel_is_one_call_and_ignores_jobs_that_already_ended(
    client: SlurmClient, recorder: lab.RecordingTransport, remote_dir: str
) -> None:
    done = client.submit("#!/bin/bash\ntrue\n", unique("done"), {"output": f"{remote_dir}/%j.out"})
    wait_finished(client, [done])
    running = [
        client.submit("#!/bin/bash\nsleep 60\n", unique("cancel"), {"output": f"{remote_dir}/%j.out"}) for _ in range(3)
    ]
    recorder.commands.clear()
    client.cancel([done.job_id, *(j.job_id for j in running)])
    assert recorder.count("scancel") == 1
    states = wait_finished(client, running)
    assert {s.state for s in states.values()} == {JobState.CANCELLED}


HOSTILE = "it's `touch {canary}` $(touch {canary}) ; touch {canary} & ünïcødé  spaces $HOME \\"


def test_hostile_strings_never_change_the_command(client: SlurmClient, transport: Transport, remote_dir: str) -> None:
    canary = f"{remote_dir}/pwned"
    text = HOSTILE.format(canary=canary)
    body = f'#!/bin/bash\ncat "$0" > {shlex.quote(remote_dir)}/script-as-run\n# {text}\n'
    job = client.submit(body, text, {"comment": text, "output": f"{remote_dir}/%j.out", "time": "00:05:00"})
    as_queued = transport.run(f"squeue --noheader --jobs={job.job_id} --states=all --format='%j|%k'").stdout
    assert as_queued == f"{text}|{text}\n"
    assert wait_finished(client, [job])[job.job_id].succeeded
    assert transport.run(f"cat {remote_dir}/script-as-run").stdout == body
    assert not transport.run(f"test -e {canary}").ok
    # slurmdbd first records a job with a non-ASCII name as "allocation", then corrects it.
    lab.wait_until(lambda: client.find_by_name([text], job.submitted_after), timeout=30, what="sacct knows the name")
    assert [j.job_id for j in client.find_by_name([text], job.submitted_after)[text]] == [job.job_id]


def test_a_name_with_a_newline_is_refused_before_anything_runs(
    client: SlurmClient, recorder: lab.RecordingTransport
) -> None:
    with pytest.raises(ValueError, match="control character"):
        client.submit("#!/bin/bash\ntrue\n", "two\nlines")
    assert recorder.commands == []


def test_the_client_carries_on_while_slurmctld_restarts(
    client: SlurmClient, transport: Transport, remote_dir: str
) -> None:
    if not isinstance(transport, SSHTransport):
        pytest.skip("restarting daemons needs root; the SSH run has it")
    job = client.submit("#!/bin/bash\nsleep 8\n", unique("survivor"), {"output": f"{remote_dir}/%j.out"})
    restarting = lab.restart_in_background("slurmctld", down_for=5)
    during = client.poll([job])[job.job_id]  # waits for the controller to come back
    after = client.submit("#!/bin/bash\ntrue\n", unique("after-restart"), {"output": f"{remote_dir}/%j.out"})
    restarting.join()
    states = wait_finished(client, [job, after])
    assert during.state != JobState.UNKNOWN
    assert states[job.job_id].succeeded and states[after.job_id].succeeded
