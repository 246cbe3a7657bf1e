"""How the client reads Slurm's output and builds sbatch's arguments (no cluster needed).

The texts below are what Slurm 22.05 prints; the lab tests exercise the same parsers live.
"""

from datetime import UTC, datetime, timedelta

import pytest

from dagster_slurm_launcher.slurm import JobState, SlurmClient, SubmittedJob, sbatch_arguments, validate_job_name
from dagster_slurm_launcher.slurm.parse import parse_duration, parse_memory, parse_sacct, parse_squeue
from dagster_slurm_launcher.transport import CommandResult, Transport

SUBMITTED = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)


def sacct_row(
    raw_id: str,
    state: str,
    exit_code: str = "0:0",
    rss: str = "",
    name: str = "job",
    submit: str = "2026-11-24T18:00:05",
) -> str:
    return "|".join(
        [
            raw_id,
            state,
            exit_code,
            "debug",
            "node1",
            submit,
            "2026-11-24T18:00:06",
            "2026-11-24T18:01:06",
            "60",
            "00:30:00",
            "2",
            "1",
            "01:30.000",
            rss,
            "billing=2,cpu=2,mem=200M,node=1",
            "billing=2,cpu=2,mem=200M,node=1",
            "/shared/runs/x",
            name,
        ]
    )


def test_a_finished_job_carries_its_accounting() -> None:
    out = "\n".join(
        [
            sacct_row("7", "COMPLETED"),
            sacct_row("7.batch", "COMPLETED", rss="2048K", name="batch"),
            sacct_row("7.0", "COMPLETED", rss="1.5M", name="python"),
        ]
    )
    job = parse_sacct(out)["7"]
    assert job.succeeded and job.work_dir == "/shared/runs/x"
    assert job.max_rss_bytes == 2048 * 1024  # the largest of its steps
    assert job.elapsed == timedelta(seconds=60) and job.total_cpu == timedelta(seconds=90)
    assert job.cpu_efficiency == pytest.approx(0.75)
    assert job.node_hours == pytest.approx(60 / 3600)


def test_success_needs_the_batch_step_to_succeed_too() -> None:
    out = "\n".join([sacct_row("7", "COMPLETED"), sacct_row("7.batch", "FAILED", exit_code="1:0", name="batch")])
    assert not parse_sacct(out)["7"].succeeded


def test_a_requeued_job_is_reported_by_its_latest_run() -> None:
    out = "\n".join(
        [
            sacct_row("9", "REQUEUED"),
            sacct_row("9.batch", "CANCELLED", name="batch"),
            sacct_row("9", "RUNNING", submit="2026-11-24T18:05:00"),
        ]
    )
    job = parse_sacct(out)["9"]
    assert job.state == JobState.RUNNING and job.batch_state is None


def test_who_cancelled_a_job_is_kept_as_its_reason() -> None:
    job = parse_sacct(sacct_row("3", "CANCELLED by 1001", exit_code="0:15"))["3"]
    assert (job.state, job.reason, job.exit_code) == (JobState.CANCELLED, "by 1001", (0, 15))


def test_every_slurm_state_is_recognised() -> None:
    for state in [
        "PENDING",
        "RUNNING",
        "COMPLETING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "PREEMPTED",
        "REQUEUED",
        "BOOT_FAIL",
        "DEADLINE",
    ]:
        assert JobState.parse(state)[0].value == state
    assert JobState.parse("SOMETHING_NEW")[0] == JobState.UNKNOWN


def test_a_pending_job_shows_its_reason() -> None:
    job = parse_squeue("12|PENDING|Priority|||2026-11-24T18:00:05|30:00|/shared/x|my job|with a pipe")["12"]
    assert (job.state, job.reason, job.node_list, job.name) == (
        JobState.PENDING,
        "Priority",
        None,
        "my job|with a pipe",
    )
    assert job.work_dir == "/shared/x"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00:01.500", timedelta(seconds=1.5)),
        ("01:02:03", timedelta(hours=1, minutes=2, seconds=3)),
        ("2-00:00:01", timedelta(days=2, seconds=1)),
        ("UNLIMITED", None),
    ],
)
def test_slurm_durations(text: str, expected: timedelta | None) -> None:
    assert parse_duration(text) == expected


def test_slurm_memory_sizes() -> None:
    assert [parse_memory(t) for t in ["512K", "2G", "0", ""]] == [512 * 1024, 2 * 1024**3, 0, None]


def test_sbatch_options_become_long_flags() -> None:
    assert sbatch_arguments(
        {"cpus_per_task": 8, "exclusive": True, "qos": None, "requeue": False, "comment": "a b"}
    ) == ["--cpus-per-task=8", "--exclusive", "--comment=a b"]


@pytest.mark.parametrize("key", ["job_name", "parsable", "wrap"])
def test_options_the_client_owns_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="cannot be set"):
        sbatch_arguments({key: "x"})


def test_an_option_name_cannot_smuggle_arguments() -> None:
    with pytest.raises(ValueError, match="not an option name"):
        sbatch_arguments({"time=1 --wrap": "x"})


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty"),
        ("a\nb", "control character"),
        ("a,b", "separators"),
        ('a"b', "slurmdbd stores"),
        ("x" * 256, "256 bytes"),
    ],
)
def test_job_names_that_cannot_round_trip_are_refused(name: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        validate_job_name(name)


class CannedTransport(Transport):
    """Answers each program with fixed output: for the accounting-disabled fallback only, which
    the lab cluster (with accounting) cannot show."""

    def __init__(self, answers: dict[str, CommandResult]) -> None:
        self.answers = answers
        self.commands: list[str] = []

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float = 600.0) -> CommandResult:
        self.commands.append(command)
        program = command.removeprefix("TZ=UTC ").split()[0]
        return self.answers[program]


def test_without_accounting_the_client_falls_back_to_scontrol_once(caplog: pytest.LogCaptureFixture) -> None:
    scontrol = (
        "JobId=5 JobName=my step UserId=me(1) JobState=COMPLETED Reason=None ExitCode=0:0 "
        "RunTime=00:00:03 TimeLimit=00:30:00 SubmitTime=2026-11-24T18:00:05 NodeList=node1 NumCPUs=1"
    )
    transport = CannedTransport(
        {
            "squeue": CommandResult("", 0, b"", ""),
            "sacct": CommandResult("", 1, b"", "sacct: error: Slurm accounting storage is disabled\n"),
            "scontrol": CommandResult("", 0, (scontrol + "\n").encode(), ""),
        }
    )
    client = SlurmClient(transport)
    job = SubmittedJob("5", "my step", SUBMITTED)
    for _ in range(2):
        info = client.poll([job])["5"]
        assert (info.state, info.source, info.name, info.succeeded) == (JobState.COMPLETED, "scontrol", "my step", True)
    assert sum(c.startswith("TZ=UTC sacct") for c in transport.commands) == 1
