"""``dagster-slurm``: command-line checks of a site's Slurm configuration."""

import argparse
import shlex
import sys
import time
import uuid

from dagster_slurm_launcher.connect import connect
from dagster_slurm_launcher.executor.config import DEFAULT_OPTIONS, NO_EXPORT
from dagster_slurm_launcher.settings import SettingsError, SlurmSettings, load_settings
from dagster_slurm_launcher.slurm import JobInfo, SlurmClient, SlurmError, SubmittedJob
from dagster_slurm_launcher.transport import SSHTransport, TransportError

# Runs on a compute node as steps do (a login shell, nothing of this process's environment):
# proves the configured Python exists there and has this package.
_PROBE = """#!/bin/bash -l
{python} -c 'import sys, dagster_slurm_launcher as p
print(sys.executable, sys.version.split()[0], "dagster_slurm_launcher", p.__version__)'
"""


def check(settings: SlurmSettings, partition: str | None, timeout: float) -> int:
    """Connect, submit one probe job, wait for it and print what Slurm accounted; 0 if all worked."""
    cluster = connect(settings)
    client, transport = cluster.client, cluster.client.transport
    user = f"{settings.user}@" if settings.user else ""
    where = f"ssh {user}{settings.host}" if settings.transport == "ssh" else "local"
    first = transport.run("sbatch --version")
    print(f"transport  {where}: {first.stdout.strip() or 'sbatch not found'}")
    if first.shell_noise.strip():
        print(_shell_noise_warning(first.shell_noise))
    out_dir = f"{cluster.remote_base_dir}/check"
    transport.run(f"umask 077 && mkdir -p {shlex.quote(out_dir)}")
    options = {
        **DEFAULT_OPTIONS,
        **NO_EXPORT,
        "output": f"{out_dir}/%j.out",
        "time": "00:05:00",
        "partition": partition,
    }
    probe = _PROBE.format(python=shlex.quote(settings.python))
    job = client.submit(probe, f"dagster-slurm-check-{uuid.uuid4().hex[:8]}", options)
    print(f"submitted  job {job.job_id} ({job.name})")
    info = _wait(client, job, timeout, settings.poll_interval)
    if info is None:
        return 1
    output_file = shlex.quote(f"{out_dir}/{job.job_id}.out")
    # The job's login shell may print its start-up files' banner first: the probe's line is last.
    output = (transport.run(f"cat {output_file}; rm -f {output_file}").stdout.strip().splitlines() or [""])[-1]
    rss = f"{info.max_rss_bytes / 2**20:.1f} MiB" if info.max_rss_bytes is not None else "n/a"
    efficiency = f"{info.cpu_efficiency:.0%}" if info.cpu_efficiency is not None else "n/a"
    exit_code = ":".join(map(str, info.exit_code)) if info.exit_code else "n/a"
    print(
        f"finished   {info.state} exit {exit_code} on {info.node_list} after {info.elapsed}; "
        f"MaxRSS {rss}, CPU efficiency {efficiency}"
    )
    print(f"python     {output or '(no output)'}")
    if isinstance(transport, SSHTransport):
        print(f"ssh        {transport.connections_opened} connection(s) opened")
    if not info.succeeded:
        print(
            f"problem    the probe failed: is {settings.python} (DAGSTER_SLURM_PYTHON) on the compute nodes, "
            "with dagster_slurm_launcher installed?"
        )
        return 1
    return 0


def _shell_noise_warning(noise: str) -> str:
    shown = "".join(f"             | {line}\n" for line in noise.strip().splitlines()[:5])
    return (
        "warning    the cluster user's shell start-up files print for non-interactive commands:\n"
        f"{shown}"
        "           dagster-slurm ignores it, but it shows at the top of every step's stdout and breaks\n"
        "           scp, sftp and rsync. Fix: make `[[ $- == *i* ]] || return` the first line of\n"
        "           ~/.bashrc on the cluster (and of any file that prints, as ~/.profile)."
    )


def _wait(client: SlurmClient, job: SubmittedJob, timeout: float, poll_interval: float) -> JobInfo | None:
    """The job's accounting once it ended; None (and the job cancelled) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (info := client.poll([job])[job.job_id]).is_terminal:
        if time.monotonic() > deadline:
            client.cancel([job.job_id])
            reason = info.reason or "no reason"
            print(f"timeout    job {job.job_id} still {info.state} ({reason}) after {timeout:.0f}s; cancelled")
            return None
        time.sleep(min(poll_interval, 2.0))
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dagster-slurm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check_parser = commands.add_parser("check", help="submit a probe job with the DAGSTER_SLURM_* settings and report")
    check_parser.add_argument("--partition", help="partition for the probe (default: the cluster's default)")
    check_parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for the probe (default 300)"
    )
    args = parser.parse_args(argv)
    try:
        return check(load_settings(), args.partition, args.timeout)
    except (SettingsError, TransportError, SlurmError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
