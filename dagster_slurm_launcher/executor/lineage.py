"""The runs of a run's lineage: its root, its retries and re-executions."""

from dagster import DagsterInstance, DagsterRun


def lineage_run_ids(instance: DagsterInstance, run: DagsterRun) -> list[str]:
    """``run`` and every run of its lineage the instance knows, ancestors first.

    ``instance.get_run_group`` finds runs by their ``dagster/root_run_id`` tag, which runs
    re-executed through the Python API (``execute_job(reexecution_options=...)``) lack; the
    chain of parent run ids is followed as well, so a run's ancestors are always found.
    """
    ancestors = []
    parent_id = run.parent_run_id
    while parent_id is not None and parent_id not in ancestors:
        ancestors.append(parent_id)
        parent = instance.get_run_by_id(parent_id)
        parent_id = parent.parent_run_id if parent else None
    group = instance.get_run_group(run.run_id)
    others = [r.run_id for r in (group[1] if group else []) if r.run_id not in ancestors and r.run_id != run.run_id]
    return [*reversed(ancestors), *others, run.run_id]


def root_run_id(run: DagsterRun) -> str:
    """The id of the run that started ``run``'s lineage (``run``'s own, for a first run)."""
    return run.root_run_id or run.run_id
