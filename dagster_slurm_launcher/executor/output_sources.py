"""Which run's storage a step's inputs are loaded from, when some upstream jobs were adopted.

A step worker stores outputs under its own run's id (run-scoped IO managers put the run id in
the path). An adopted job's worker ran for an earlier run of the lineage, so its outputs are
under that run's id, while the run that adopted it recorded them as its own. Dagster decides
where an input comes from in ``StepExecutionContext._get_source_run_id``: from this run if the
upstream step is in the run's ``step_keys_to_execute``, else from the first
``PastExecutionState`` in the known state's parent chain that produced the output. Both are
arranged here, in the payload of the one step being submitted.
"""

from collections.abc import Iterable, Mapping, Sequence

from dagster import DagsterEventType, DagsterInstance, DagsterRun

from dagster_slurm_launcher.dagster_internals import (
    ExecuteStepArgs,
    KnownExecutionState,
    PastExecutionState,
    StepOutputHandle,
    changed,
)
from dagster_slurm_launcher.executor.lineage import lineage_run_ids
from dagster_slurm_launcher.executor.relay import TrackedStep
from dagster_slurm_launcher.run_events import SUBMITTED_BY_RUN, metadata_values

# run id -> step key -> the run that submitted the job the step's outcome came from
Adoptions = Mapping[str, Mapping[str, str]]


def earlier_adoptions(instance: DagsterInstance, run: DagsterRun) -> Adoptions:
    """The adoptions recorded by the other runs of ``run``'s lineage."""
    found: dict[str, dict[str, str]] = {}
    for other in lineage_run_ids(instance, run)[:-1]:
        for step_key, source in metadata_values(instance, other, [DagsterEventType.ENGINE_EVENT], SUBMITTED_BY_RUN):
            if step_key:
                found.setdefault(other, {})[step_key] = source
    return found


def point_inputs_at_their_runs(
    run: DagsterRun,
    args: ExecuteStepArgs,
    tracked: Iterable[TrackedStep],
    earlier: Adoptions,
    plan_step_keys: Sequence[str],
) -> tuple[DagsterRun, ExecuteStepArgs]:
    """``run`` and ``args`` for one step's worker, with inputs from adopted jobs' outputs
    loaded from the runs that submitted those jobs: adopted by this run (``tracked``) or by
    an earlier run of the lineage (``earlier``)."""
    adopted_here = [s for s in tracked if s.source_run_id != run.run_id and s.outputs]
    known = args.known_state or KnownExecutionState()
    chain = _rebase(known.parent_state, earlier)
    for step in adopted_here:
        chain = PastExecutionState(run_id=step.source_run_id, produced_outputs=set(step.outputs), parent_state=chain)
    if adopted_here:
        # Not "executed in this run", or Dagster would look for their outputs under this run's id.
        skip = {s.step_key for s in adopted_here}
        to_execute = [k for k in run.step_keys_to_execute or plan_step_keys if k not in skip]
        run = changed(run, step_keys_to_execute=to_execute)
    if chain is known.parent_state:  # _rebase returns the chain itself when nothing moved
        return run, args
    return run, changed(args, known_state=changed(known, parent_state=chain))


def _rebase(state: PastExecutionState | None, earlier: Adoptions) -> PastExecutionState | None:
    """The parent chain, with each run's outputs of adopted steps credited to the run that
    submitted the job, just ahead of the adopting run (so lookup order is kept)."""
    if state is None:
        return None
    rest = _rebase(state.get_parent_state(), earlier)
    adopted = earlier.get(state.run_id, {})
    moved: dict[str, set[StepOutputHandle]] = {}
    for handle in state.produced_outputs:
        if handle.step_key in adopted:
            moved.setdefault(adopted[handle.step_key], set()).add(handle)
    if not moved and rest is state.get_parent_state():
        return state
    rebased = PastExecutionState(
        run_id=state.run_id,
        produced_outputs={h for h in state.produced_outputs if h.step_key not in adopted},
        parent_state=rest,
    )
    for source, handles in moved.items():
        rebased = PastExecutionState(run_id=source, produced_outputs=handles, parent_state=rebased)
    return rebased
