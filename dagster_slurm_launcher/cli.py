"""``dagster-slurm``: check a site, list a run's Slurm jobs, clean up finished runs' folders, list and
prune shipped code and environments."""

import argparse
import json
import os
import sys
import textwrap
from datetime import datetime, timedelta

from dagster import DagsterInstance

from dagster_slurm_launcher.connect import connect
from dagster_slurm_launcher.doctor import Finding, examine
from dagster_slurm_launcher.housekeeping import UnknownRun, cutoff_of, lineage_jobs, plan_cleanup, remove_folders
from dagster_slurm_launcher.settings import ENV_PREFIX, SettingsError, SlurmSettings, load_settings
from dagster_slurm_launcher.ship.inventory import Shipped, in_use, inventory, prune
from dagster_slurm_launcher.slurm import SlurmError
from dagster_slurm_launcher.transport import TransportError

CLI_RECONNECT_TIMEOUT = 30.0


def check(partition: str | None, timeout: float, as_json: bool, ship: bool) -> int:
    """Check the site with the ``DAGSTER_SLURM_*`` settings; 1 if any check found a problem."""
    from dagster_slurm_launcher import __version__

    cluster = connect(_settings())
    findings: list[Finding] = []
    for finding in examine(cluster, __version__, partition, timeout, ship):
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
    _print_table(rows)
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


def shipped_list() -> int:
    """Print the code and environments shipped under the cluster's base folder."""
    rows = [("KIND", "STATE", "LAST USED", "SIZE", "NAME")]
    for e in inventory(connect(_settings())).entries:
        used = datetime.fromtimestamp(e.last_used).strftime("%Y-%m-%d %H:%M")
        rows.append((e.kind, e.state, used, _kib(e.size_kib), e.name))
    _print_table(rows)
    return 0


# Uploads and builds in progress are never pruned younger than this, whatever --older-than says.
PARTIAL_AGE = timedelta(days=1)


def shipped_prune(older_than: timedelta, dry_run: bool) -> int:
    """Remove shipped code and environments that no run used for ``older_than``, but any that
    runs may still need (see :func:`in_use`); uploads and builds in progress after a day."""
    instance = _instance()
    cluster = connect(_settings())
    keep = in_use(instance, cluster)
    listed = inventory(cluster)
    partial_age = max(older_than, PARTIAL_AGE)

    def verdict(e: Shipped) -> str | None:
        if e.entry in keep:
            return "kept (a run may still need it)"
        limit = older_than if e.state == "ready" else partial_age  # a live build touches its lock each minute
        if listed.now - e.last_used < limit.total_seconds():
            return "kept (used since the age limit)"
        return None

    verdicts = {e.entry: verdict(e) for e in listed.entries}
    doomed = [e for e in listed.entries if verdicts[e.entry] is None]
    outcome: dict[str, str] = {}
    if not dry_run:
        # The cluster checks each entry's last use again, against the shorter age.
        outcome = prune(cluster, [e for e in doomed if e.state == "ready"], older_than.total_seconds())
        outcome |= prune(cluster, [e for e in doomed if e.state != "ready"], partial_age.total_seconds())
    for e in listed.entries:
        shown = verdicts[e.entry] or ("would remove" if dry_run else None)
        if shown is None:
            shown = "removed" if outcome.get(e.entry) == "removed" else "kept (a run used it meanwhile)"
        print(f"{shown:34} {e.entry}  {_kib(e.size_kib)}")
    removed = len(doomed) if dry_run else sum(v == "removed" for v in outcome.values())
    print(f"{removed} of {len(listed.entries)} shipped entries {'to remove' if dry_run else 'removed'}")
    return 0


def _print_table(rows: list[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell; the last one as it is (a run id, a hash)."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])


def _kib(size: int) -> str:
    if size < 1024:
        return f"{size} KiB"
    return f"{size / 1024:.1f} MiB" if size < 1024 * 1024 else f"{size / 1024 / 1024:.1f} GiB"


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
    check_parser.add_argument(
        "--ship",
        action="store_true",
        help="DAGSTER_SLURM_PYTHON is the base of shipped environments (ship.environment build or wheels), "
        "not a Python with this package",
    )
    jobs_parser = commands.add_parser("jobs", help="list the Slurm jobs of a run and of its retries and re-executions")
    jobs_parser.add_argument("run_id", help="a run id from the instance at DAGSTER_HOME")
    cleanup_parser = commands.add_parser(
        "cleanup", help="remove the cluster folders of lineages whose runs all ended long enough ago"
    )
    cleanup_parser.add_argument(
        "--older-than", type=_age, required=True, help="age of the lineage's last end: 7d, 12h, 30m, 2w"
    )
    cleanup_parser.add_argument("--dry-run", action="store_true", help="print what would be removed, remove nothing")
    shipped_parser = commands.add_parser("shipped", help="list or prune the code and environments runs shipped")
    shipped_commands = shipped_parser.add_subparsers(dest="shipped_command", required=True)
    shipped_commands.add_parser("list", help="list shipped code and environments, their state, size and last use")
    prune_parser = shipped_commands.add_parser(
        "prune", help="remove shipped code and environments no run used for a while (never an unfinished run's)"
    )
    prune_parser.add_argument("--older-than", type=_age, required=True, help="time since last use: 30d, 12h, 2w")
    prune_parser.add_argument("--dry-run", action="store_true", help="print what would be removed, remove nothing")
    args = parser.parse_args(argv)
    try:
        if args.command == "jobs":
            return jobs(args.run_id)
        if args.command == "cleanup":
            return cleanup(args.older_than, args.dry_run)
        if args.command == "shipped":
            return shipped_list() if args.shipped_command == "list" else shipped_prune(args.older_than, args.dry_run)
        return check(args.partition, args.timeout, args.json, args.ship)
    except (SettingsError, TransportError, SlurmError, UnknownRun) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
