"""``dagster-slurm check``: what a site must provide, checked one at a time, each problem with its fix."""

import shlex
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Literal

from dagster_slurm_launcher.connect import Cluster
from dagster_slurm_launcher.executor.config import DEFAULT_OPTIONS, NO_EXPORT
from dagster_slurm_launcher.slurm import JobInfo, SubmittedJob
from dagster_slurm_launcher.transport import SSHTransport, Transport
from dagster_slurm_launcher.transport.programs import command
from dagster_slurm_launcher.transport.ssh import MAX_CHANNELS

# Runs on a compute node as steps do (a login shell, nothing of this process's environment):
# proves the configured Python exists there and has this package, then leaves a file whose
# arrival on the login node is timed (the shared filesystem's caching).
_PROBE = """#!/bin/bash -l
{python} -c 'import sys, dagster_slurm_launcher as p
print(sys.executable, sys.version.split()[0], "dagster_slurm_launcher", p.__version__)'
echo written >{written}
"""
# The same for `check --ship`: the steps' environment is built from this Python (ship), which
# needs 3.11 or newer and, for pip, venv's ensurepip (Debian splits it out as python3-venv).
_SHIP_PROBE = """#!/bin/bash -l
{python} -c 'import sys, importlib.util as u
print(sys.executable, sys.version.split()[0], "ensurepip" if u.find_spec("ensurepip") else "no-ensurepip")'
echo written >{written}
"""
SHIP_MINIMUM_PYTHON = (3, 11)
# Clocks further apart than this blur "submitted after" bounds and file ages.
CLOCK_TOLERANCE = 2.0
NOISY_SHELL_FIX = (
    "put `[[ $- == *i* ]] || return` in ~/.bashrc on the cluster above the lines that print (keep "
    "PATH, module and conda set-up that jobs need above it), and guard what prints in ~/.profile "
    "or ~/.bash_profile the same way"
)

# Steps' folders hold their stdout, stderr and journals.
LOW_SPACE_GIB = 1.0

Status = Literal["ok", "warning", "problem"]


@dataclass(frozen=True)
class Finding:
    """One check's outcome: ``detail`` says what was seen, ``fix`` what to do about a warning or problem."""

    check: str
    status: Status
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def examine(
    cluster: Cluster, version: str, partition: str | None, timeout: float, ship: bool = False
) -> Iterator[Finding]:
    """Run every check against ``cluster``, yielding each finding as soon as it is known.

    With ``ship``, the configured Python is the base of environments that runs ship (the
    executor's ``ship.environment`` ``build`` or ``wheels``), not one that has this package.
    """
    transport = cluster.client.transport
    result = transport.run(command("site_facts", cluster.remote_base_dir))
    facts = _facts(result.stdout)
    if not result.ok:  # only the run folders' base cannot fail the program
        yield Finding(
            "filesystem",
            "problem",
            f"could not create {cluster.remote_base_dir} on the login node: {result.stderr.strip()}",
            "set DAGSTER_SLURM_REMOTE_BASE_DIR to a directory this user can create, on a filesystem "
            "that the compute nodes share",
        )
        return
    sbatch = facts.get("sbatch", "")
    if not sbatch.startswith("slurm"):
        yield Finding(
            "slurm",
            "problem",
            f"sbatch not usable on {facts.get('host', 'the login node')}: {sbatch or 'no output'}",
            "run the check against a login node that has Slurm's commands on PATH",
        )
        return
    yield Finding("slurm", "ok", f"{sbatch} on {facts.get('host')}")
    yield _shell(result.shell_noise)
    if isinstance(transport, SSHTransport):
        yield _sessions(transport)
    yield _login_clock(transport)
    yield _accounting(facts)
    yield _filesystem(cluster.remote_base_dir, facts)
    yield _lock(facts)
    yield from _probe(cluster, version, partition, timeout, ship)


def _facts(output: str) -> dict[str, str]:
    pairs = (line.split("\t", 1) for line in output.splitlines() if "\t" in line)
    return {name: value.strip() for name, value in pairs}


def _shell(noise: str) -> Finding:
    if not noise.strip():
        return Finding("shell", "ok", "start-up files print nothing for a non-interactive command")
    lines = noise.strip().splitlines()
    shown = " | ".join(lines[:3]) + (" | ..." if len(lines) > 3 else "")
    return Finding(
        "shell",
        "warning",
        f"the cluster user's start-up files print for non-interactive commands: {shown!r}. dagster-slurm "
        "ignores it, but it heads every step's stdout, and breaks scp, sftp and rsync",
        NOISY_SHELL_FIX,
    )


def _sessions(transport: SSHTransport) -> Finding:
    allowed = transport.sessions_allowed(MAX_CHANNELS)
    if allowed >= MAX_CHANNELS:
        return Finding("sessions", "ok", f"sshd allows {MAX_CHANNELS} commands at once on one connection")
    return Finding(
        "sessions",
        "warning",
        f"sshd allows only {allowed} commands at once on one connection (MaxSessions); more wait their turn",
        f"ask the site to raise MaxSessions to at least {MAX_CHANNELS} for this user, or accept slower polls",
    )


def _login_clock(transport: Transport) -> Finding:
    before = time.time()
    remote = float(transport.run("date +%s.%N").stdout.strip())
    after = time.time()
    skew = remote - (before + after) / 2
    detail = f"the login node's clock is {abs(skew):.1f}s {'ahead of' if skew > 0 else 'behind'} this host's"
    if abs(skew) - (after - before) / 2 <= CLOCK_TOLERANCE:
        return Finding("clock", "ok", detail)
    return Finding("clock", "warning", detail, "run NTP (chrony, systemd-timesyncd) on this host and the cluster")


def _accounting(facts: dict[str, str]) -> Finding:
    storage, min_job_age = facts.get("accounting", ""), facts.get("min_job_age", "?")
    if storage and storage != "accounting_storage/none":
        return Finding("accounting", "ok", f"{storage}; finished jobs come from sacct (MinJobAge {min_job_age})")
    return Finding(
        "accounting",
        "warning",
        f"accounting is off: a finished job is known only while the controller keeps it (MinJobAge "
        f"{min_job_age}); a run worker away longer than that finds its steps UNKNOWN",
        "ask the site for slurmdbd accounting, or keep MinJobAge well above your longest run-worker outage",
    )


def _filesystem(base: str, facts: dict[str, str]) -> Finding:
    fields = facts.get("free", "").split()
    if len(fields) != 3 or not (fields[0] + fields[1]).isdigit():
        return Finding("filesystem", "warning", f"{base}: df could not measure it", "check that this user can read it")
    free, size, mount = int(fields[0]) / 2**20, int(fields[1]) / 2**20, fields[2]
    detail = f"{base}: {facts.get('fs_type', '?')} at {mount}, {free:.1f} GiB free of {size:.1f} GiB"
    if "quota" in facts:
        detail += f"; quota: {facts['quota']}"
    if free < LOW_SPACE_GIB:
        return Finding("filesystem", "warning", detail, "free space (or ask for more quota): steps' output lands here")
    return Finding("filesystem", "ok", detail)


def _lock(facts: dict[str, str]) -> Finding:
    lock, skew = facts.get("lock", "not tried"), facts.get("fs_clock_skew")
    if lock != "exclusive":
        return Finding(
            "claim lock",
            "problem",
            f"the submission claim's lock directory: {lock}",
            "point DAGSTER_SLURM_REMOTE_BASE_DIR at a shared filesystem this user can write",
        )
    if skew is not None and abs(int(skew)) > 60:
        return Finding(
            "claim lock",
            "warning",
            f"mkdir is exclusive, but the file server's clock is {skew}s off the login node's: a lock left by "
            "a dead submitter is judged stale (after 5 minutes) by the wrong age",
            "ask the site to synchronise the file servers' clocks",
        )
    return Finding("claim lock", "ok", f"mkdir is exclusive; the file server's clock is {skew}s off the login node's")


def _probe(cluster: Cluster, version: str, partition: str | None, timeout: float, ship: bool) -> Iterator[Finding]:
    client, transport, settings = cluster.client, cluster.client.transport, cluster.settings
    out_dir = f"{cluster.remote_base_dir}/check"
    transport.run(f"umask 077 && mkdir -p {shlex.quote(out_dir)}")
    token = uuid.uuid4().hex[:8]
    written = f"{out_dir}/{token}.written"
    options = {**DEFAULT_OPTIONS, **NO_EXPORT, "output": f"{out_dir}/{token}.out", "time": "00:05:00"}
    probe = _SHIP_PROBE if ship else _PROBE
    script = probe.format(python=shlex.quote(settings.python), written=shlex.quote(written))
    before = time.time()
    job = client.submit(script, f"dagster-slurm-check-{token}", {**options, "partition": partition})
    after = time.time()
    info = _wait(cluster, job, written, timeout)
    if not info.is_terminal:
        client.cancel([job.job_id])
        yield Finding(
            "probe job",
            "problem",
            f"job {job.job_id} still {info.state} ({info.reason or 'no reason'}) after {timeout:.0f}s; cancelled",
            "pass --partition (and check `sinfo`), or a longer --timeout",
        )
        return
    yield _job(info)
    yield _controller_clock(info, before, after)
    output = transport.run(shlex.join(["cat", f"{out_dir}/{token}.out"])).stdout.strip().splitlines()
    last = output[-1] if output else ""
    yield _base_python(settings.python, last, info) if ship else _python(settings.python, last, version, info)
    yield _visibility(transport, written, settings.journal_grace)
    transport.run(shlex.join(["rm", "-f", f"{out_dir}/{token}.out", written]))


def _wait(cluster: Cluster, job: SubmittedJob, written: str, timeout: float) -> JobInfo:
    """The job's record once it ended, or the last one seen at ``timeout``. Looking for the
    file while the job runs primes the login node's caches, as the relay's journal reads do."""
    deadline = time.monotonic() + timeout
    while not (info := cluster.client.poll([job])[job.job_id]).is_terminal and time.monotonic() < deadline:
        cluster.client.transport.run(shlex.join(["test", "-e", written]))
        time.sleep(min(cluster.settings.poll_interval, 2.0))
    return info


def _job(info: JobInfo) -> Finding:
    rss = f"{info.max_rss_bytes / 2**20:.1f} MiB" if info.max_rss_bytes is not None else "n/a"
    exit_code = ":".join(map(str, info.exit_code)) if info.exit_code else "n/a"
    detail = f"job {info.job_id} {info.state} exit {exit_code} on {info.node_list} after {info.elapsed}; MaxRSS {rss}"
    return Finding(
        "probe job",
        "ok" if info.succeeded else "problem",
        detail,
        "" if info.succeeded else "see the python line below, and the job's output",
    )


def _controller_clock(info: JobInfo, before: float, after: float) -> Finding:
    if info.submit_time is None:
        return Finding("controller clock", "warning", "accounting gave no submit time to compare", "")
    submitted = info.submit_time.timestamp()
    # Slurm records whole seconds: the submit time is within [before - 1, after] on a true clock.
    off = submitted - after if submitted > after else submitted - (before - 1) if submitted < before - 1 else 0.0
    detail = f"the controller's clock is within {abs(off) + 1:.0f}s of this host's"
    if abs(off) <= CLOCK_TOLERANCE:
        return Finding("controller clock", "ok", detail)
    return Finding(
        "controller clock",
        "warning",
        f"the controller's clock is about {abs(off):.0f}s {'ahead of' if off > 0 else 'behind'} this host's: "
        "finding a step's job again by its submission time needs them within a minute",
        "run NTP (chrony, systemd-timesyncd) on this host and the cluster",
    )


def _base_python(python: str, line: str, info: JobInfo) -> Finding:
    words = line.split()
    if len(words) != 3 or words[2] not in ("ensurepip", "no-ensurepip"):
        return Finding(
            "python",
            "problem",
            f"{python} did not run on {info.node_list}: {line or 'no output'}",
            "set DAGSTER_SLURM_PYTHON to a Python 3.11 or newer on the compute nodes (or `module load` it in setup)",
        )
    found = tuple(int(x) for x in words[1].split(".")[:2])
    if found < SHIP_MINIMUM_PYTHON:
        return Finding(
            "python",
            "problem",
            f"{words[0]} is Python {words[1]}; shipped environments need 3.11 or newer",
            "set DAGSTER_SLURM_PYTHON (the executor's python) to a newer Python on the cluster",
        )
    if words[2] == "no-ensurepip":
        return Finding(
            "python",
            "warning",
            f"{words[0]} (Python {words[1]}) has no ensurepip: `ship.installer: pip` cannot make a virtualenv",
            "use `ship.installer: uv` if uv is on the login node's PATH, or ask for the distribution's venv "
            "package (Debian and Ubuntu: python3-venv)",
        )
    return Finding("python", "ok", f"{words[0]} (Python {words[1]}) can be the base of shipped environments")


def _python(python: str, line: str, version: str, info: JobInfo) -> Finding:
    if "dagster_slurm_launcher" not in line:
        return Finding(
            "python",
            "problem",
            f"{python} on {info.node_list} did not import dagster_slurm_launcher: {line or 'no output'}",
            "set DAGSTER_SLURM_PYTHON to a Python on the compute nodes that has dagster-slurm-launcher "
            "(and your code's dependencies) installed",
        )
    remote_version = line.split()[-1]
    if remote_version != version:
        return Finding(
            "python",
            "warning",
            f"{line}; this host has dagster_slurm_launcher {version}",
            f"install dagster-slurm-launcher=={version} into the cluster's environment",
        )
    return Finding("python", "ok", line)


def _visibility(transport: Transport, written: str, grace: float) -> Finding:
    """How long after the job ended its last file shows on the login node."""
    started = time.monotonic()
    while not transport.run(shlex.join(["test", "-e", written])).ok:
        if time.monotonic() - started > grace:
            return Finding(
                "shared files",
                "problem",
                f"a file the probe job wrote is not visible from the login node {grace:.0f}s after the job ended",
                "put DAGSTER_SLURM_REMOTE_BASE_DIR on a filesystem that compute nodes and login nodes share",
            )
        time.sleep(0.5)
    delay = time.monotonic() - started
    detail = f"a file the job wrote showed on the login node {delay:.1f}s after the job ended"
    if delay > grace / 2:
        return Finding(
            "shared files",
            "warning",
            f"{detail}, close to DAGSTER_SLURM_JOURNAL_GRACE ({grace:.0f}s)",
            f"raise DAGSTER_SLURM_JOURNAL_GRACE to at least {2 * delay:.0f}s",
        )
    return Finding("shared files", "ok", detail)
