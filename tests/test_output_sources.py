"""Where a step's inputs are loaded from when an upstream job was adopted from another run."""

from dagster._core.execution.plan.outputs import StepOutputHandle
from dagster._core.execution.plan.state import PastExecutionState

from dagster_slurm_launcher.executor.output_sources import _rebase

SLOW = StepOutputHandle("slow_step", "result")
OTHER = StepOutputHandle("other", "result")


def chain(state: PastExecutionState | None) -> list[tuple[str, set[StepOutputHandle]]]:
    out = []
    while state is not None:
        out.append((state.run_id, set(state.produced_outputs)))
        state = state.get_parent_state()
    return out


def test_outputs_a_run_adopted_are_credited_to_the_run_whose_job_produced_them() -> None:
    parents = PastExecutionState("r2", {SLOW, OTHER}, PastExecutionState("r1", set(), None))
    rebased = _rebase(parents, {"r2": {"slow_step": "r1"}})
    # Dagster takes the first state in the chain that produced an output.
    assert chain(rebased) == [("r1", {SLOW}), ("r2", {OTHER}), ("r1", set())]


def test_a_chain_without_adoptions_is_left_as_it_is() -> None:
    parents = PastExecutionState("r2", {SLOW}, PastExecutionState("r1", {OTHER}, None))
    assert _rebase(parents, {"r3": {"slow_step": "r1"}}) is parents
