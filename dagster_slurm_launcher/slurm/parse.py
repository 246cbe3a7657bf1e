"""Parsers for the text that squeue, sacct and scontrol print.

The client runs those commands with ``TZ=UTC``, so every time they print is UTC.
"""

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from dagster_slurm_launcher.slurm.job import JobInfo, JobState

# The job name goes last: it is the one free-text column, so a stray delimiter in a name
# (from a job this client did not submit) cannot shift the other columns.
SQUEUE_FORMAT = "%i|%T|%r|%N|%P|%V|%l|%Z|%j"
SACCT_FIELDS = (
    "JobIDRaw,State,ExitCode,Partition,NodeList,Submit,Start,End,ElapsedRaw,Timelimit,"
    "AllocCPUS,NNodes,TotalCPU,MaxRSS,ReqTRES,AllocTRES,WorkDir,JobName"
)
_MEMORY_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


def parse_time(text: str) -> datetime | None:
    text = text.strip()
    if not text or text in {"Unknown", "None", "N/A"}:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


def format_time(when: datetime) -> str:
    """A time as sacct's ``--starttime`` takes it (in UTC: the client sets ``TZ=UTC``)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def parse_duration(text: str) -> timedelta | None:
    """Slurm durations: ``[D-][HH:]MM:SS[.fff]``."""
    text = text.strip()
    if not text or text in {"INVALID", "UNLIMITED", "Partition_Limit"}:
        return None
    days, _, clock = text.rpartition("-")
    parts = [float(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    hours, minutes, seconds = parts
    return timedelta(days=int(days or 0), hours=hours, minutes=minutes, seconds=seconds)


def parse_memory(text: str) -> int | None:
    """sacct memory values (``2048K``, ``1.5G``) in bytes."""
    match = re.fullmatch(r"([0-9.]+)([KMGTP]?)", text.strip())
    if not match:
        return None
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2)])


def parse_exit_code(text: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"(\d+):(\d+)", text.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def _int(text: str) -> int | None:
    return int(text) if text.strip().isdigit() else None


def _blank(text: str) -> str | None:
    text = text.strip()
    return None if text in {"", "(null)", "None assigned", "None"} else text


def _seconds(text: str) -> timedelta | None:
    return timedelta(seconds=int(text)) if text.strip().isdigit() else None


# JobInfo field: how its text is parsed, and the name each source gives it (sacct's --format
# names; squeue's columns are named so too, in the order of SQUEUE_FORMAT; scontrol's keys).
# None: the source does not report it.
_FIELDS = {
    "name": (str, "JobName", "JobName", "JobName"),
    "reason": (_blank, "Reason", None, "Reason"),
    "exit_code": (parse_exit_code, None, "ExitCode", "ExitCode"),
    "node_list": (_blank, "NodeList", "NodeList", "NodeList"),
    "partition": (_blank, "Partition", "Partition", "Partition"),
    "submit_time": (parse_time, "Submit", "Submit", "SubmitTime"),
    "start_time": (parse_time, None, "Start", "StartTime"),
    "end_time": (parse_time, None, "End", "EndTime"),
    "elapsed": (_seconds, None, "ElapsedRaw", None),
    "time_limit": (_blank, "Timelimit", "Timelimit", "TimeLimit"),
    "alloc_cpus": (_int, None, "AllocCPUS", "NumCPUs"),
    "alloc_nodes": (_int, None, "NNodes", "NumNodes"),
    "total_cpu": (parse_duration, None, "TotalCPU", None),
    "max_rss_bytes": (parse_memory, None, "MaxRSS", None),
    "req_tres": (_blank, None, "ReqTRES", None),
    "alloc_tres": (_blank, None, "AllocTRES", None),
    "work_dir": (_blank, "WorkDir", "WorkDir", "WorkDir"),
}
_SOURCES = ("squeue", "sacct", "scontrol")
_SQUEUE_COLUMNS = ("JobID", "State", "Reason", "NodeList", "Partition", "Submit", "Timelimit", "WorkDir", "JobName")
_SACCT_NAMES = tuple(SACCT_FIELDS.split(","))


def _job(source: str, job_id: str, state: JobState, row: dict[str, str], **fields: object) -> JobInfo:
    """A JobInfo from ``row`` (the source's fields by its names) and ``fields`` parsed by the caller."""
    column = _SOURCES.index(source) + 1
    parsed = {name: spec[0](row.get(spec[column], "")) for name, spec in _FIELDS.items() if spec[column]}
    return JobInfo(job_id=job_id, state=state, source=source, **{**parsed, **fields})  # type: ignore[arg-type]


def parse_squeue(output: str) -> dict[str, JobInfo]:
    """Jobs from ``squeue --noheader --format=SQUEUE_FORMAT``, by job id."""
    jobs = {}
    for line in output.splitlines():
        if line.strip():
            row = dict(zip(_SQUEUE_COLUMNS, line.split("|", len(_SQUEUE_COLUMNS) - 1), strict=True))
            jobs[row["JobID"]] = _job("squeue", row["JobID"], JobState.parse(row["State"])[0], row)
    return jobs


def parse_sacct(output: str) -> dict[str, JobInfo]:
    """Jobs from ``sacct --parsable2 --noheader --duplicates --format=SACCT_FIELDS``, by job id.

    Each job's row is followed by its steps' rows (``123.batch``, ``123.0``); with
    ``--duplicates`` a requeued job has one row per run, in order, and the last one wins.
    """
    jobs: dict[str, JobInfo] = {}
    for line in output.splitlines():
        cols = line.split("|", len(_SACCT_NAMES) - 1)
        if len(cols) != len(_SACCT_NAMES):
            continue
        row = dict(zip(_SACCT_NAMES, cols, strict=True))
        job_id, _, step = row["JobIDRaw"].partition(".")
        state, detail = JobState.parse(row["State"])
        if not step:
            jobs[job_id] = _job("sacct", job_id, state, row, reason=detail)
        elif job_id in jobs:
            jobs[job_id] = _with_step_row(jobs[job_id], step, state, row["ExitCode"], row["MaxRSS"])
    return jobs


def _with_step_row(job: JobInfo, step: str, state: JobState, exit_code: str, max_rss: str) -> JobInfo:
    """``job`` with what one of its steps' rows adds: the peak memory, the batch step's end."""
    rss = parse_memory(max_rss)
    updates: dict[str, object] = {}
    if rss is not None and (job.max_rss_bytes is None or rss > job.max_rss_bytes):
        updates["max_rss_bytes"] = rss
    if step == "batch":
        updates["batch_state"] = state
        updates["batch_exit_code"] = parse_exit_code(exit_code)
    return replace(job, **updates) if updates else job  # type: ignore[arg-type]


_SCONTROL_FIELD = re.compile(r"(\w+)=(.*?)(?= \w+=|$)")


def parse_scontrol(output: str) -> dict[str, JobInfo]:
    """Jobs from ``scontrol --oneliner show job`` (the fallback without accounting), by job id."""
    jobs = {}
    for line in output.splitlines():
        row = dict(_SCONTROL_FIELD.findall(line.strip()))
        if "JobId" in row:
            state, detail = JobState.parse(row.get("JobState", ""))
            reason = _blank(row.get("Reason", "")) or detail
            elapsed = parse_duration(row.get("RunTime", ""))
            jobs[row["JobId"]] = _job("scontrol", row["JobId"], state, row, reason=reason, elapsed=elapsed)
    return jobs
