"""A typed Slurm client over a transport: submit, poll, find by name, cancel.

Every poll costs at most one ``squeue`` (one controller RPC) and one ``sacct`` (one slurmdbd
query), whatever the number of jobs: a cluster's controller is shared by everyone.
"""

import io
import re
import shlex
import tarfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from dagster_slurm_launcher.logs import get_logger
from dagster_slurm_launcher.retry import RetryDeadlineExceeded, backoff
from dagster_slurm_launcher.slurm.job import JobInfo, SubmittedJob, unknown
from dagster_slurm_launcher.slurm.parse import (
    SACCT_FIELDS,
    SQUEUE_FORMAT,
    format_time,
    parse_sacct,
    parse_scontrol,
    parse_squeue,
    parse_time,
)
from dagster_slurm_launcher.transport import CommandInterrupted, CommandResult, Transport, TransportError
from dagster_slurm_launcher.transport.programs import command, program

log = get_logger(__name__)

# Login node and controller clocks may differ; sacct windows and id-reuse checks allow this much.
CLOCK_SKEW = timedelta(minutes=5)
# slurmdbd stores job names in a column of this many bytes.
MAX_JOB_NAME_BYTES = 255
# Messages of a controller or slurmdbd that is restarting, overloaded or briefly unreachable.
_TRANSIENT = (
    "Unable to contact slurm controller",
    "Socket timed out",
    "Zero Bytes were transmitted",
    "Resource temporarily unavailable",
    "Slurm temporarily unable",
    "Problem talking to the database",
    "Connection refused",
)
# Of those, the ones that prove sbatch's request never reached the controller.
_NOT_SUBMITTED = ("Unable to contact slurm controller (connect failure)", "Resource temporarily unavailable")
# And the ones that prove nothing of the kind.
_MAYBE_SUBMITTED = tuple(m for m in _TRANSIENT if not any(m in n for n in _NOT_SUBMITTED))
# Jobs per submit_jobs command: bounds what one command carries, and what a failed one costs.
SUBMIT_BATCH = 200
# Job names in one squeue/sacct --name argument: 500 of ours are 31 KB, under the kernel's
# 128 KiB limit on one argument (a resumed run looks up every step of its plan at once).
NAMES_PER_QUERY = 500
_OPTION_KEY = re.compile(r"[a-z][a-z0-9_-]*")
_CLIENT_OWNED_OPTIONS = {
    "job-name": "the job name is the `name` argument",
    "parsable": "the client parses the job id",
    "wrap": "the script is the `script` argument",
}
# Only the cluster user's own jobs: names of other users' jobs must not be taken for ours.
# (Shell text on purpose: the user is whoever the transport logs in as.)
_MINE = '--user="$(id -un)"'

OptionValue = str | int | float | bool | None


class SlurmError(RuntimeError):
    """Slurm refused or failed a request; the message carries Slurm's own text."""


class SubmissionUncertain(SlurmError):
    """The connection or controller failed after ``sbatch`` was sent: the job may exist.

    Look it up by :attr:`name` (:meth:`SlurmClient.find_by_name`) before submitting again.
    """

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


class AlreadySubmitted(SlurmError):
    """Another submitter claimed this job name since the caller last looked: adopt its job."""

    def __init__(self, name: str, job_id: str) -> None:
        super().__init__(f"job {name!r} was submitted as {job_id} by another worker")
        self.name = name
        self.job_id = job_id


@dataclass(frozen=True)
class PackMember:
    """A step that a pack (one job running many steps) runs: the pack claims its name."""

    name: str
    """The step's job name (see naming.job_name), claimed for the pack."""
    known: frozenset[str]
    """The step's jobs the submitter saw when it decided to submit."""
    folder: str
    """The step's folder, recorded with the pack's id under its name."""


@dataclass(frozen=True)
class Claim:
    """Makes look-up-then-submit atomic among submitters sharing ``directory``.

    ``directory/<name>`` holds the id of the last job submitted under ``name``, written under an
    exclusive lock together with the submission. A submission goes ahead only if that id is one
    of ``known`` (the jobs the caller saw when it decided to submit) or there is none. A pack
    claims its ``members``' names instead of its own, all or none, and records each member's
    folder after the pack's id.
    """

    directory: str
    known: frozenset[str]
    members: Sequence[PackMember] = ()

    def fields(self, name: str) -> list[str]:
        """The claim program's arguments before the sbatch command line, for job ``name``."""
        if not self.members:
            return [self.directory, "1", name, " ".join(sorted(self.known)), ""]
        # Sorted: two packs that share names take their locks in one order, never deadlocking.
        members = sorted(self.members, key=lambda m: m.name)
        return [
            self.directory,
            str(len(members)),
            *(f for m in members for f in (m.name, " ".join(sorted(m.known)), m.folder)),
        ]

    def wrap(self, name: str, sbatch: list[str]) -> str:
        """The command that runs ``sbatch`` (an argv) under the claim."""
        return command("claim", *self.fields(name), *sbatch)


@dataclass(frozen=True)
class JobRequest:
    """One job for :meth:`SlurmClient.submit_all`: ``folder`` (0700) is created with ``files``
    in it (file name to contents, each 0600), all at once, unless it exists already (a job sent
    again keeps its folder as it is); ``empty`` files are created there if missing; then the
    file named ``script`` is submitted as job ``name`` with ``options`` under ``claim``."""

    name: str
    options: Mapping[str, OptionValue]
    claim: Claim
    folder: str
    files: Mapping[str, bytes]
    script: str
    empty: Sequence[str] = ()


def _archive(requests: Sequence[JobRequest]) -> bytes:
    """The files of ``requests`` as the submit_jobs program reads them: a tar archive, each
    request's under its index."""
    archive = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=archive, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for index, request in enumerate(requests):
            folder = tarfile.TarInfo(str(index))
            folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o700, now
            tar.addfile(folder)
            for name, data in request.files.items():
                member = tarfile.TarInfo(f"{index}/{name}")
                # Dated now (tar restores the date): scratch filesystems purge by age.
                member.size, member.mode, member.mtime = len(data), 0o600, now
                tar.addfile(member, io.BytesIO(data))
    return archive.getvalue()


def _fields(request: JobRequest) -> bytes:
    """``request`` as the submit_jobs program reads it after the archive: NUL-terminated fields."""
    # The client's own options go last: sbatch takes the last of repeated options.
    argv = ["sbatch", *sbatch_arguments(request.options), "--parsable", f"--job-name={request.name}"]
    [claims, *claim] = request.claim.fields(request.name)
    fields = [
        request.folder,
        claims,
        *claim,
        str(len(request.empty)),
        *request.empty,
        request.script,
        str(len(argv)),
        *argv,
    ]
    if any("\0" in field for field in fields):
        raise ValueError(f"a path, name or sbatch option of job {request.name!r} contains a NUL character")
    return "".join(f"{field}\0" for field in fields).encode()


def _refused_by_sbatch(exit_code: str, stderr: str) -> bool:
    """Whether a failed submission was sbatch refusing the job, not something failing around it."""
    return exit_code.isdigit() and int(exit_code) < 128 and "sbatch: error" in stderr


def _clock(line: str) -> datetime | None:
    try:
        return parse_time(line)
    except ValueError:
        return None


def _submission_failure(name: str, stderr: str) -> SlurmError | None:
    """What sbatch's failure means for job ``name``; ``None`` if its request never reached the
    controller (submitting again cannot make a twin)."""
    # A message that could mean "may have been accepted" wins over one that means "never sent".
    if any(marker in stderr for marker in _MAYBE_SUBMITTED):
        return SubmissionUncertain(f"sbatch for {name!r} may have been accepted: {stderr}", name)
    if any(marker in stderr for marker in _NOT_SUBMITTED):
        return None
    if any(marker in stderr for marker in _TRANSIENT):
        return SubmissionUncertain(f"sbatch for {name!r} may have been accepted: {stderr}", name)
    return SlurmError(f"sbatch rejected job {name!r}: {stderr}")


def validate_job_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` can round-trip through sbatch, squeue and sacct."""
    problem = None
    if not name:
        problem = "it is empty"
    elif len(name.encode()) > MAX_JOB_NAME_BYTES:
        problem = f"it is {len(name.encode())} bytes long; accounting keeps {MAX_JOB_NAME_BYTES}"
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        problem = "it contains a control character (a newline or tab, say)"
    elif "," in name or "|" in name:
        problem = "it contains ',' or '|', which squeue and sacct use as separators"
    elif '"' in name:
        problem = "it contains '\"', which slurmdbd stores as '`', so sacct could not find it by name"
    if problem:
        raise ValueError(f"job name {name!r} cannot be used: {problem}")


def option_flag(key: str) -> str:
    """sbatch's name of option ``key``, which may be written with ``_`` (``cpus_per_task``)."""
    return key.replace("_", "-")


def owned_option(key: str, owned: Iterable[str]) -> str | None:
    """The one of ``owned`` (long option names) that sbatch would take ``key`` for, if any:
    sbatch takes any unambiguous prefix of a long option (`job_n` is --job-name)."""
    flag = option_flag(key)
    return next((o for o in owned if o.startswith(flag)), None)


def sbatch_arguments(options: Mapping[str, OptionValue]) -> list[str]:
    """``{"cpus_per_task": 8, "exclusive": True}`` -> ``["--cpus-per-task=8", "--exclusive"]``.

    ``None`` and ``False`` leave an option out. Keys are sbatch's long option names, with ``_``
    or ``-``; values are passed as given.
    """
    args = []
    for key, value in options.items():
        if not _OPTION_KEY.fullmatch(key):
            raise ValueError(
                f"sbatch option {key!r} is not an option name: use sbatch's long names, e.g. 'cpus_per_task'"
            )
        flag = option_flag(key)
        owned = owned_option(key, _CLIENT_OWNED_OPTIONS)
        if owned:
            raise ValueError(f"sbatch option {key!r} cannot be set: {_CLIENT_OWNED_OPTIONS[owned]}")
        if value is None or value is False:
            continue
        args.append(f"--{flag}" if value is True else f"--{flag}={value}")
    return args


class SlurmClient:
    """Submits and watches Slurm jobs through ``transport``.

    Args:
        transport: where Slurm's commands run (a login node over SSH, or this machine).
        retry_timeout: seconds to keep retrying while the controller or slurmdbd is unreachable.
    """

    def __init__(self, transport: Transport, retry_timeout: float = 300.0) -> None:
        self.transport = transport
        self._retry_timeout = retry_timeout
        self._accounting = True

    def submit(
        self, script: str, name: str, options: Mapping[str, OptionValue] | None = None, claim: Claim | None = None
    ) -> SubmittedJob:
        """Submit ``script`` (sent on stdin, never on the command line) as job ``name``.

        With ``claim``, only if no other submitter got there first (see :class:`Claim`).

        Raises:
            AlreadySubmitted: ``claim`` found a job the caller did not know; nothing was submitted.
            ValueError: ``name`` or an option cannot be used; nothing was submitted.
            SlurmError: sbatch refused the job; the message is sbatch's.
            SubmissionUncertain: the job may or may not exist; look it up by name.
        """
        validate_job_name(name)
        # The client's own options go last: sbatch takes the last of repeated options.
        argv = ["sbatch", *sbatch_arguments(options or {}), "--parsable", f"--job-name={name}"]
        # The cluster's clock, read just before sbatch, bounds this job's submit time from below.
        sbatch = shlex.join(argv) if claim is None else claim.wrap(name, argv)
        command = f"TZ=UTC date +%Y-%m-%dT%H:%M:%S && {sbatch}"
        deadline = time.monotonic() + self._retry_timeout
        attempt = 0
        while True:
            try:
                result = self.transport.run(command, stdin=script.encode())
            except CommandInterrupted as exc:
                raise SubmissionUncertain(f"submitting {name!r}: {exc}", name) from exc
            if result.ok:
                lines = result.stdout.split()
                if lines[-2:-1] == ["claimed"]:
                    raise AlreadySubmitted(name, lines[-1])
                return SubmittedJob(
                    job_id=lines[-1].split(";")[0],
                    name=name,
                    submitted_after=parse_time(lines[0]),  # type: ignore[arg-type]
                )
            stderr = result.stderr.strip()
            failure = _submission_failure(name, stderr)
            if (failure is None or type(failure) is SlurmError) and not _refused_by_sbatch(
                str(result.exit_code), stderr
            ):
                raise SubmissionUncertain(
                    f"submitting {name!r} ended with exit status {result.exit_code}: {stderr or 'no message'}", name
                )
            if failure is not None:
                raise failure
            self._backoff(attempt, deadline, "sbatch could not reach the controller", stderr)
            attempt += 1

    def submit_all(self, requests: Sequence[JobRequest]) -> list[SubmittedJob | SlurmError]:
        """Write each request's folder and submit its job under its claim, all in one command.

        Returns each request's outcome, in order: its job, or the error :meth:`submit` would
        have raised for it (:class:`AlreadySubmitted`, :class:`SubmissionUncertain`, or
        :class:`SlurmError` for a job sbatch rejected). One rejected job does not stop the others.
        While the controller is unreachable, the jobs not yet submitted are sent again.

        Raises:
            ValueError: a name, an option or a field cannot be used; nothing was submitted.
        """
        for request in requests:
            validate_job_name(request.name)
        # Every request's fields can be sent, before any is.
        fields = [_fields(request) for request in requests]
        outcomes: dict[int, SubmittedJob | SlurmError] = {}
        todo = list(range(len(requests)))
        deadline, attempt = 0.0, 0
        while todo:
            chunk = todo[:SUBMIT_BATCH]
            answers, not_reached = self._submit_batch([requests[i] for i in chunk], [fields[i] for i in chunk])
            outcomes.update(zip(chunk, answers, strict=False))
            todo = todo[len(answers) :]
            if not_reached is None:
                attempt = 0
                continue
            if not todo:
                break
            if answers or not attempt:  # the controller's outage starts now, after progress
                deadline, attempt = time.monotonic() + self._retry_timeout, 0
            try:
                backoff(attempt, deadline, "sbatch could not reach the controller", not_reached)
            except RetryDeadlineExceeded as exc:
                for i in todo:
                    outcomes[i] = SlurmError(f"job {requests[i].name!r} was not submitted: {exc}")
                break
            attempt += 1
        return [outcomes[i] for i in range(len(requests))]

    def _submit_batch(
        self, batch: Sequence[JobRequest], fields: Sequence[bytes]
    ) -> tuple[list[SubmittedJob | SlurmError], str | None]:
        """Run the submit_jobs program once for ``batch`` (each job's encoded ``fields``
        beside it): the outcomes of its first jobs, in order, and, if the controller could not
        be reached, sbatch's message (the job after those answered, and the rest, were not
        submitted). Never raises for a job: once the program ran, some jobs may exist, and
        each one's outcome must reach the caller."""
        archive = _archive(batch)
        stage = batch[0].folder.rsplit("/", 1)[0]  # on the jobs' filesystem, for renames
        try:
            result = self.transport.run(
                command("submit_jobs", program("claim"), str(len(archive)), stage, *_NOT_SUBMITTED),
                stdin=archive + b"".join(fields),
            )
        except CommandInterrupted as exc:
            # What the command printed is lost with it: any of these jobs may exist.
            return [SubmissionUncertain(f"submitting {r.name!r}: {exc}", r.name) for r in batch], None
        except TransportError as exc:  # no connection (the transport retried already): nothing ran
            return [SlurmError(f"job {r.name!r} was not submitted: {exc}") for r in batch], None
        lines = [line for line in result.stdout.split("\n") if line]
        submitted_after = _clock(lines[0]) if lines else None
        if submitted_after is None:
            # The program reads the clock before its first sbatch: nothing was submitted.
            problem = result.stderr.strip() or f"exit status {result.exit_code}"
            return [SlurmError(f"job {r.name!r} was not submitted: {problem}") for r in batch], None
        answers: list[SubmittedJob | SlurmError] = []
        for line in lines[1:]:
            index, status, rest = [*line.split(" ", 2), "", ""][:3]
            if index != str(len(answers)) or len(answers) == len(batch):
                break  # not the program's answer for the next job: what follows is uncertain
            name = batch[len(answers)].name
            if status == "submitted":
                answers.append(SubmittedJob(job_id=rest.split(";")[0], name=name, submitted_after=submitted_after))
            elif status == "claimed":
                answers.append(AlreadySubmitted(name, rest))
            elif status == "unwritten":
                answers.append(SlurmError(f"the folder of job {name!r} could not be written: {rest}"))
            elif status == "failed":
                code, _, stderr = rest.partition(" ")
                stderr = stderr.strip()
                failure = _submission_failure(name, stderr)
                if (failure is None or type(failure) is SlurmError) and not _refused_by_sbatch(code, stderr):
                    # Not sbatch's refusal (its claim record failed, or it was killed): the job
                    # may exist, and is looked up before it is sent again.
                    failure = SubmissionUncertain(
                        f"submitting {name!r} ended with exit status {code}: {stderr or 'no message'}", name
                    )
                if any(marker in stderr for marker in _NOT_SUBMITTED):
                    # The program stopped here: the controller is out of reach.
                    if failure is not None:
                        answers.append(failure)
                    return answers, stderr
                assert failure is not None
                answers.append(failure)
            else:
                break
        if len(answers) < len(batch):
            # Stopped without a word (a signal, a malformed request): the job it was at may
            # have been submitted, so each remaining job is looked up before it is sent again.
            problem = result.stderr.strip() or f"exit status {result.exit_code}"
            answers += [
                SubmissionUncertain(f"submitting {r.name!r}: the submission program stopped ({problem})", r.name)
                for r in batch[len(answers) :]
            ]
        return answers, None

    def poll(self, jobs: Iterable[SubmittedJob]) -> dict[str, JobInfo]:
        """The current state of every job in ``jobs``, by job id, in one squeue and one sacct call.

        Running and pending jobs come from squeue; finished ones from sacct (with accounting),
        and a job neither knows yet is ``UNKNOWN``, never assumed finished.
        """
        jobs = list(jobs)
        if not jobs:
            return {}
        live = self._squeue(["--jobs=" + ",".join(j.job_id for j in jobs)])
        return states_of(jobs, live, self.accounting(gone_from_queue(jobs, live)))

    def queue(self) -> dict[str, JobInfo]:
        """Every job of this user that the controller holds (pending, running, or just ended),
        by job id, in one ``squeue``."""
        return self._squeue([], mine=True)

    def accounting(self, jobs: Sequence[SubmittedJob]) -> dict[str, JobInfo]:
        """What accounting holds for ``jobs``, by job id, in one ``sacct`` (none for no jobs)."""
        if not jobs:
            return {}
        since = min(j.submitted_after for j in jobs)
        return self._finished(since, ["--jobs=" + ",".join(j.job_id for j in jobs)])

    def find_by_name(self, names: Iterable[str], submitted_after: datetime) -> dict[str, list[JobInfo]]:
        """This user's jobs named any of ``names`` submitted after ``submitted_after``.

        Returns every name's jobs newest first (a resubmitted step has several); names with no
        job are absent. One squeue and one sacct call per NAMES_PER_QUERY names.
        """
        names = sorted(set(names))
        for name in names:
            validate_job_name(name)
        merged: dict[str, JobInfo] = {}
        for i in range(0, len(names), NAMES_PER_QUERY):
            selection = ["--name=" + ",".join(names[i : i + NAMES_PER_QUERY])]
            live = self._squeue(selection, mine=True)
            merged.update(self._finished(submitted_after, selection, mine=True))
            for job_id, info in live.items():
                if not info.is_terminal or job_id not in merged:
                    merged[job_id] = info
        wanted = set(names)
        by_name: dict[str, list[JobInfo]] = {}
        for info in merged.values():
            if info.name in wanted and (info.submit_time is None or info.submit_time >= submitted_after - CLOCK_SKEW):
                by_name.setdefault(info.name, []).append(info)
        for jobs in by_name.values():
            jobs.sort(key=_newest_first)
        return by_name

    def queued_with_prefix(self, prefix: str) -> list[JobInfo]:
        """This user's jobs in the controller (pending, running, or just ended) whose name
        starts with ``prefix``, in one ``squeue``."""
        return [info for info in self.queue().values() if info.name.startswith(prefix)]

    def cancel(self, job_ids: Iterable[str]) -> None:
        """Cancel ``job_ids`` with one ``scancel``; jobs that already ended are not an error."""
        job_ids = list(job_ids)
        if not job_ids:
            return
        result = self._query(shlex.join(["scancel", *job_ids]))
        errors = [
            line
            for line in result.stderr.splitlines()
            if line.strip() and "already completing or completed" not in line and "Invalid job id" not in line
        ]
        if errors:
            raise SlurmError(f"scancel failed: {' '.join(errors)}")

    def _squeue(self, selection: list[str], mine: bool = False) -> dict[str, JobInfo]:
        argv = ["squeue", "--noheader", "--states=all", f"--format={SQUEUE_FORMAT}", *selection]
        result = self._query(_command(argv, mine))
        if not result.ok:
            if "Invalid job id specified" in result.stderr:
                return {}  # every id asked for is gone from the controller
            raise SlurmError(f"squeue failed: {result.stderr.strip()}")
        return parse_squeue(result.stdout)

    def _finished(self, since: datetime, selection: list[str], mine: bool = False) -> dict[str, JobInfo]:
        """Jobs from accounting (or, without it, what the controller still remembers)."""
        if self._accounting:
            # --starttime bounds the scan: sacct's default is midnight (jobs vanish across it)
            # or, with --jobs, the epoch (slow on a busy cluster).
            argv = [
                "sacct",
                "--parsable2",
                "--noheader",
                "--duplicates",
                f"--format={SACCT_FIELDS}",
                f"--starttime={format_time(since - CLOCK_SKEW)}",
                *selection,
            ]
            result = self._query(_command(argv, mine))
            if result.ok:
                return parse_sacct(result.stdout)
            if "is after end time" in result.stderr:
                return {}  # a start time past the cluster's clock: no job can match yet
            if "accounting storage is disabled" not in result.stderr:
                raise SlurmError(f"sacct failed: {result.stderr.strip()}")
            self._accounting = False
            log.warning(
                "slurm accounting is disabled; finished jobs are read from scontrol until the "
                "controller forgets them (MinJobAge), and later reported UNKNOWN"
            )
        result = self._query("scontrol --oneliner show job")
        if not result.ok and "No jobs in the system" not in result.stdout + result.stderr:
            raise SlurmError(f"scontrol show job failed: {result.stderr.strip()}")
        return parse_scontrol(result.stdout)

    def _query(self, command: str) -> CommandResult:
        """Run a read-only (or idempotent) command, retrying while Slurm is briefly unreachable."""
        deadline = time.monotonic() + self._retry_timeout
        attempt = 0
        while True:
            try:
                result = self.transport.run(f"TZ=UTC {command}")
            except CommandInterrupted as exc:
                problem: str = str(exc)
            else:
                if result.ok or not any(marker in result.stderr for marker in _TRANSIENT):
                    return result
                problem = result.stderr.strip()
            self._backoff(attempt, deadline, f"{command.split()[0]} failed", problem)
            attempt += 1

    def _backoff(self, attempt: int, deadline: float, what: str, problem: str) -> None:
        try:
            backoff(attempt, deadline, what, problem)
        except RetryDeadlineExceeded as exc:
            raise SlurmError(f"{exc}; gave up after {self._retry_timeout:.0f}s") from None


def gone_from_queue(jobs: Iterable[SubmittedJob], live: Mapping[str, JobInfo]) -> list[SubmittedJob]:
    """The ``jobs`` that ``live`` (squeue's answer) does not show pending or running: their
    state, and their accounting, are in sacct."""
    return [
        job
        for job in jobs
        if (info := live.get(job.job_id)) is None or info.is_terminal or not _is_same_job(info, job.submitted_after)
    ]


def states_of(
    jobs: Iterable[SubmittedJob], live: Mapping[str, JobInfo], finished: Mapping[str, JobInfo]
) -> dict[str, JobInfo]:
    """Each of ``jobs``' state from squeue's answer (``live``) and sacct's (``finished``):
    sacct's for a job squeue does not show running or pending, ``UNKNOWN`` where neither knows it."""
    jobs = list(jobs)
    gone = {job.job_id for job in gone_from_queue(jobs, live)}
    found: dict[str, JobInfo] = {}
    for job in jobs:
        info = live.get(job.job_id)
        if job.job_id not in gone:
            found[job.job_id] = live[job.job_id]
            continue
        # Accounting's record first (it has the usage), but an ended record before one that
        # is not: slurmdbd can lag behind the controller.
        candidates = [
            c for c in (finished.get(job.job_id), info) if c is not None and _is_same_job(c, job.submitted_after)
        ]
        candidates.sort(key=lambda c: not c.is_terminal)
        found[job.job_id] = candidates[0] if candidates else unknown(job.job_id, job.name)
    return found


def _command(argv: list[str], mine: bool) -> str:
    return f"{shlex.join(argv)} {_MINE}" if mine else shlex.join(argv)


def _is_same_job(info: JobInfo, submitted_after: datetime) -> bool:
    """Job ids wrap around: a record with our id but an earlier submit time is another job."""
    return info.submit_time is None or info.submit_time >= submitted_after - CLOCK_SKEW


def _newest_first(info: JobInfo) -> tuple[float, int]:
    submitted = info.submit_time.timestamp() if info.submit_time else float("inf")
    return (-submitted, -int(info.job_id) if info.job_id.isdigit() else 0)
