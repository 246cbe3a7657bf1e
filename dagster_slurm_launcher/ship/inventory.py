"""What runs shipped to the cluster, and pruning what no run has used for a while."""

from dataclasses import dataclass

from dagster import DagsterInstance, RunsFilter

from dagster_slurm_launcher.connect import Cluster
from dagster_slurm_launcher.housekeeping import NOT_FINISHED
from dagster_slurm_launcher.ship.shipping import CODE_DIR, CODE_TAG, ENVIRONMENT_TAG, ENVS_DIR
from dagster_slurm_launcher.transport import TransportError
from dagster_slurm_launcher.transport.programs import command


@dataclass(frozen=True)
class Shipped:
    """One entry under ``<remote_base_dir>/code`` or ``/envs``."""

    kind: str
    name: str
    state: str
    last_used: float
    """Seconds since the epoch, by the cluster's filesystem clock."""
    size_kib: int

    @property
    def entry(self) -> str:
        return f"{self.kind}/{self.name}"


def inventory(cluster: Cluster) -> list[Shipped]:
    """Everything shipped under the cluster's base folder, code first, oldest use first."""
    result = cluster.client.transport.run(command("list_shipped", cluster.remote_base_dir))
    if not result.ok:
        raise TransportError(f"could not list {cluster.remote_base_dir} on the cluster: {result.stderr.strip()}")
    entries = []
    for line in result.stdout.splitlines():
        kind, name, state, used, size = line.split()
        entries.append(Shipped(kind, name, state, float(used), int(size or 0)))
    return sorted(entries, key=lambda e: (e.kind, e.last_used))


def in_use(instance: DagsterInstance) -> set[str]:
    """The entries that unfinished runs of the instance use (their run tags say which)."""
    used = set()
    for run in instance.get_runs(RunsFilter(statuses=NOT_FINISHED)):
        for tag, kind in ((CODE_TAG, CODE_DIR), (ENVIRONMENT_TAG, ENVS_DIR)):
            if tag in run.tags:
                used.add(f"{kind}/{run.tags[tag]}")
    return used


def prune(cluster: Cluster, entries: list[Shipped], cutoff: float) -> dict[str, str]:
    """Remove ``entries`` unless a run used them since ``cutoff`` (checked on the cluster)."""
    if not entries:
        return {}
    program = command("remove_shipped", cluster.remote_base_dir, str(int(cutoff)))
    stdin = b"".join(e.entry.encode() + b"\0" for e in entries)
    result = cluster.client.transport.run(program, stdin=stdin)
    if not result.ok:
        raise TransportError(f"pruning {cluster.remote_base_dir} failed on the cluster: {result.stderr.strip()}")
    outcome = {}
    for line in result.stdout.splitlines():
        verdict, _, entry = line.partition(" ")
        outcome[entry] = verdict
    return outcome
