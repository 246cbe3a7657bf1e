"""What runs shipped to the cluster, and pruning what no run has used for a while."""

from dataclasses import dataclass

from dagster import DagsterInstance, RunsFilter

from dagster_slurm_launcher.connect import Cluster
from dagster_slurm_launcher.executor.lineage import lineage_run_ids
from dagster_slurm_launcher.housekeeping import NOT_FINISHED, queued_roots
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


@dataclass(frozen=True)
class Inventory:
    """What is shipped, and the time by the cluster filesystem's clock when it was listed."""

    now: float
    entries: list[Shipped]


def inventory(cluster: Cluster) -> Inventory:
    """Everything shipped under the cluster's base folder, code first, oldest use first."""
    result = cluster.client.transport.run(command("list_shipped", cluster.remote_base_dir))
    lines = result.stdout.splitlines()
    if not result.ok or not lines or not lines[0].startswith("now "):
        raise TransportError(f"could not list {cluster.remote_base_dir} on the cluster: {result.stderr.strip()}")
    entries = []
    for line in lines[1:]:
        kind, name, state, used, size = line.split()
        entries.append(Shipped(kind, name, state, float(used), int(size)))
    return Inventory(float(lines[0].split()[1]), sorted(entries, key=lambda e: (e.kind, e.last_used)))


def in_use(instance: DagsterInstance, cluster: Cluster) -> set[str]:
    """The entries that runs may still need: those of the instance's unfinished runs, and of
    every run of a lineage with a job in Slurm's queue (a run whose worker gave up is FAILURE
    while its queued jobs wait, for a retry to adopt). Run tags say which entries a run uses."""
    runs = list(instance.get_runs(RunsFilter(statuses=NOT_FINISHED)))
    for root in queued_roots(cluster):
        run = instance.get_run_by_id(root)
        if run is not None:
            runs += [r for r in (instance.get_run_by_id(i) for i in lineage_run_ids(instance, run)) if r]
    used = set()
    for run in runs:
        for tag, kind in ((CODE_TAG, CODE_DIR), (ENVIRONMENT_TAG, ENVS_DIR)):
            if tag in run.tags:
                used.add(f"{kind}/{run.tags[tag]}")
    return used


def prune(cluster: Cluster, entries: list[Shipped], age_seconds: float) -> dict[str, str]:
    """Remove ``entries`` unless a run used them in the last ``age_seconds`` (checked on the cluster)."""
    if not entries:
        return {}
    program = command("remove_shipped", cluster.remote_base_dir, str(int(age_seconds)))
    stdin = b"".join(e.entry.encode() + b"\0" for e in entries)
    result = cluster.client.transport.run(program, stdin=stdin)
    if not result.ok:
        raise TransportError(f"pruning {cluster.remote_base_dir} failed on the cluster: {result.stderr.strip()}")
    outcome = {}
    for line in result.stdout.splitlines():
        verdict, _, entry = line.partition(" ")
        outcome[entry] = verdict
    return outcome
