"""How a pack is sized from its steps' sbatch options, and which steps may be packed."""

import pytest

from dagster_slurm_launcher.executor.config import (
    SlurmConfigError,
    format_time,
    memory_bytes,
    needs_own_job,
    packable,
    time_seconds,
)


def test_memory_sizes_read_as_sbatch_reads_them() -> None:
    assert memory_bytes("500") == memory_bytes("500M") == 500 * 2**20
    assert memory_bytes("4G") == 4 * 2**30 and memory_bytes("4gb") == 4 * 2**30
    assert memory_bytes(None) is None


def test_a_memory_that_is_not_a_size_is_refused_naming_it() -> None:
    with pytest.raises(SlurmConfigError, match="'lots'"):
        memory_bytes("lots")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30", 1800), ("1:30", 90), ("1:30:00", 5400), ("2-12", 216000), ("2-12:30", 217800), ("0-00:00:15", 15)],
)
def test_times_read_as_sbatch_reads_them(value: str, seconds: int) -> None:
    assert time_seconds(value) == seconds
    assert time_seconds(format_time(seconds)) == seconds


@pytest.mark.parametrize("value", ["soon", "1:2:3:4", "-5", "UNLIMITED"])
def test_a_time_that_packs_cannot_multiply_is_refused(value: str) -> None:
    with pytest.raises(SlurmConfigError, match="packed steps need a time"):
        time_seconds(value)


def test_steps_with_gpus_tasks_or_nodes_get_a_job_of_their_own() -> None:
    for key in ["gpus", "gres", "gpus-per-task", "ntasks", "nodes"]:
        assert needs_own_job({key: 1})
    assert not needs_own_job({"mem": "1G", "cpus-per-task": 2, "no-requeue": True, "gpus": None})


def test_the_pack_tag_opts_a_step_out_and_anything_else_is_refused() -> None:
    assert packable("a", {}) and packable("a", {"dagster-slurm/pack": "True"})
    assert not packable("a", {"dagster-slurm/pack": "false"})
    with pytest.raises(SlurmConfigError, match="must be 'true' or 'false'"):
        packable("a", {"dagster-slurm/pack": "no"})
