"""``dagster-slurm``: check a site, list a run's Slurm jobs, clean up finished runs' folders."""

import argparse
import json
import os
import sys
import textwrap
from datetime import timedelta

from dagster import DagsterInstance

from dagster_slurm_launcher.connect import connect
from dagster_slurm_launcher.doctor import Finding, examine
from dagster_slurm_launcher.housekeeping import UnknownRun, cutoff_of, lineage_jobs, plan_cleanup, remove_folders
from dagster_slurm_launcher.settings import ENV_PREFIX, SettingsError, SlurmSettings, load_settings
from dagster_slurm_launcher.slurm import SlurmError
from dagster_slurm_launcher.transport import TransportError

CLI_RECONNECT_TIMEOUT = 30.0


def check(partition: str | None, timeout: float, as_json: bool) -> int:
    """Check the site with the ``DAGSTER_SLURM_*`` settings; 1 if any check found a problem."""
    from dagster_slurm_launcher import __version__

    cluster = connect(_settings())
    findings: list[Finding] = []
    for finding in examine(cluster, __version__, partition, timeout):
        findings.append(finding)
        if not as_json:
            print(_line(finding), flush=True)
    if as_json:
        print(json.dumps([f.as_dict() for f in findings], indent=2))
    return 1 if any(f.status == "problem" for f in findings) else 0


def jobs(run_id: str) -> int:
    """Print the Slurm jobs of ``run_id``'s lineage."""
    instance = _instance()
    rows = [("JOB ID", "STATE", "EXIT", "ELAPSED", "NODE", "STEP", "SUBMITTED BY RUN")]
    for job in lineage_jobs(instance, connect(_settings()), run_id):
        info = job.info
        exit_code = ":".join(map(str, info.exit_code)) if info.exit_code else ""
        elapsed = str(info.elapsed) if info.elapsed is not None else ""
        rows.append(
            (info.job_id, info.state, exit_code, elapsed, info.node_list or "", job.step_key, job.run_id or "?")
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0


def cleanup(older_than: timedelta, dry_run: bool) -> int:
    """Remove the cluster folders of lineages whose runs all ended ``older_than`` ago."""
    instance = _instance()
    cluster = connect(_settings())
    cutoff = cutoff_of(older_than)
    verdicts = plan_cleanup(instance, cluster, cutoff)
    doomed = [v.folder for v in verdicts if v.remove]
    removed = set() if dry_run else remove_folders(cluster, doomed, cutoff)
    for v in verdicts:
        if not v.remove:
            print(f"{'kept':12} {v.folder}: {v.reason}")
        elif dry_run:
            print(f"{'would remove':12} {v.folder}: {v.reason}")
        elif v.folder in removed:
            print(f"{'removed':12} {v.folder}: {v.reason}")
        else:
            print(f"{'kept':12} {v.folder}: a run wrote to it since the age limit")
    count = len(doomed) if dry_run else len(removed)
    print(f"{count} of {len(verdicts)} lineage folder(s) {'to remove' if dry_run else 'removed'}")
    return 0


def _settings() -> SlurmSettings:
    # A person waits at the terminal: give up on an unreachable login node (a typo in the host,
    # a master connection not opened) after CLI_RECONNECT_TIMEOUT, unless told otherwise.
    explicit = f"{ENV_PREFIX}RECONNECT_TIMEOUT" in os.environ
    return load_settings(**({} if explicit else {"reconnect_timeout": CLI_RECONNECT_TIMEOUT}))


def _instance() -> DagsterInstance:
    if not os.environ.get("DAGSTER_HOME"):
        raise SettingsError("DAGSTER_HOME is not set: set it to the directory that holds the instance's dagster.yaml")
    return DagsterInstance.get()


def _age(text: str) -> timedelta:
    units = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not an age: write a number and a unit, as 7d, 12h, 30m or 2w")
    return timedelta(**{units[text[-1]]: int(text[:-1])})


def _line(finding: Finding) -> str:
    text = textwrap.fill(
        finding.detail, 110, initial_indent=f"{finding.status:8} {finding.check:17} ", subsequent_indent=" " * 27
    )
    if finding.fix:
        text += "\n" + textwrap.fill(f"fix: {finding.fix}", 110, initial_indent=" " * 27, subsequent_indent=" " * 32)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dagster-slurm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check_parser = commands.add_parser(
        "check", help="check the site with the DAGSTER_SLURM_* settings: login node, filesystem, a probe job"
    )
    check_parser.add_argument("--partition", help="partition for the probe (default: the cluster's default)")
    check_parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for the probe (default 300)"
    )
    check_parser.add_argument("--json", action="store_true", help="print the findings as JSON, for scripts")
    jobs_parser = commands.add_parser("jobs", help="list the Slurm jobs of a run and of its retries and re-executions")
    jobs_parser.add_argument("run_id", help="a run id from the instance at DAGSTER_HOME")
    cleanup_parser = commands.add_parser(
        "cleanup", help="remove the cluster folders of lineages whose runs all ended long enough ago"
    )
    cleanup_parser.add_argument(
        "--older-than", type=_age, required=True, help="age of the lineage's last end: 7d, 12h, 30m, 2w"
    )
    cleanup_parser.add_argument("--dry-run", action="store_true", help="print what would be removed, remove nothing")
    args = parser.parse_args(argv)
    try:
        if args.command == "jobs":
            return jobs(args.run_id)
        if args.command == "cleanup":
            return cleanup(args.older_than, args.dry_run)
        return check(args.partition, args.timeout, args.json)
    except (SettingsError, TransportError, SlurmError, UnknownRun) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
