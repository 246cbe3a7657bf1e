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
_SACCT_COLUMNS = SACCT_FIELDS.count(",") + 1
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


def _job(job_id: str, name: str, state: JobState, source: str, *, nodes: str, partition: str, submit: str, limit: str,
         work_dir: str, **fields: object) -> JobInfo:
    """A JobInfo from the columns every source reports, and ``fields`` parsed by the caller."""
    return JobInfo(
        job_id=job_id, name=name, state=state, source=source, node_list=_blank(nodes), partition=_blank(partition),
        submit_time=parse_time(submit), time_limit=_blank(limit), work_dir=_blank(work_dir), **fields,  # type: ignore[arg-type]
    )


def parse_squeue(output: str) -> dict[str, JobInfo]:
    """Jobs from ``squeue --noheader --format=SQUEUE_FORMAT``, by job id."""
    jobs = {}
    for line in output.splitlines():
        if not line.strip():
            continue
        job_id, state, reason, nodes, partition, submit, limit, work_dir, name = line.split("|", 8)
        parsed, _ = JobState.parse(state)
        jobs[job_id] = _job(job_id, name, parsed, "squeue", nodes=nodes, partition=partition, submit=submit, limit=limit,
                            work_dir=work_dir, reason=_blank(reason))
    return jobs


def parse_sacct(output: str) -> dict[str, JobInfo]:
    """Jobs from ``sacct --parsable2 --noheader --duplicates --format=SACCT_FIELDS``, by job id.

    Each job's row is followed by its steps' rows (``123.batch``, ``123.0``); with
    ``--duplicates`` a requeued job has one row per run, in order, and the last one wins.
    """
    jobs: dict[str, JobInfo] = {}
    for line in output.splitlines():
        if not line.strip():
            continue
        cols = line.split("|", _SACCT_COLUMNS - 1)
        if len(cols) != _SACCT_COLUMNS:
            continue
        (raw_id, state, exit_code, partition, nodes, submit, start, end, elapsed, limit,
         cpus, nnodes, total_cpu, max_rss, req_tres, alloc_tres, work_dir, name) = cols
        job_id, _, step = raw_id.partition(".")
        parsed, detail = JobState.parse(state)
        if not step:
            jobs[job_id] = _job(
                job_id, name, parsed, "sacct", nodes=nodes, partition=partition, submit=submit, limit=limit,
                work_dir=work_dir, reason=detail, exit_code=parse_exit_code(exit_code), start_time=parse_time(start),
                end_time=parse_time(end), elapsed=timedelta(seconds=int(elapsed)) if elapsed.isdigit() else None,
                alloc_cpus=_int(cpus), alloc_nodes=_int(nnodes), total_cpu=parse_duration(total_cpu),
                max_rss_bytes=parse_memory(max_rss), req_tres=_blank(req_tres), alloc_tres=_blank(alloc_tres),
            )
        elif job_id in jobs:
            jobs[job_id] = _with_step_row(jobs[job_id], step, parsed, exit_code, max_rss)
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
        fields = dict(_SCONTROL_FIELD.findall(line.strip()))
        if "JobId" not in fields:
            continue
        state, detail = JobState.parse(fields.get("JobState", ""))
        run_time = parse_duration(fields.get("RunTime", ""))
        jobs[fields["JobId"]] = _job(
            fields["JobId"], fields.get("JobName", ""), state, "scontrol", nodes=fields.get("NodeList", ""),
            partition=fields.get("Partition", ""), submit=fields.get("SubmitTime", ""), limit=fields.get("TimeLimit", ""),
            work_dir=fields.get("WorkDir", ""), reason=_blank(fields.get("Reason", "")) or detail,
            exit_code=parse_exit_code(fields.get("ExitCode", "")), start_time=parse_time(fields.get("StartTime", "")),
            end_time=parse_time(fields.get("EndTime", "")), elapsed=run_time, alloc_cpus=_int(fields.get("NumCPUs", "")),
            alloc_nodes=_int(fields.get("NumNodes", "")),
        )
    return jobs

