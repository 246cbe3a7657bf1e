"""The shell programs the package runs on the login node do what their headers say, there.

(The multi-file reader's own tests are in test_journal.py.)"""

import shlex

import pytest

from dagster_slurm_launcher.executor.script import write_step_folder
from dagster_slurm_launcher.slurm import Claim
from dagster_slurm_launcher.transport import Transport
from dagster_slurm_launcher.transport.programs import command

pytestmark = pytest.mark.lab


def sh(transport: Transport, script: str) -> str:
    return transport.run(script).stdout


def test_a_claim_runs_the_command_and_records_the_id_it_prints(transport: Transport, remote_dir: str) -> None:
    claims = f"{remote_dir}/claims"
    out = transport.run(Claim(claims, frozenset()).wrap("job-a", ["echo", "4711;cluster"])).stdout
    assert out.strip() == "4711;cluster"
    assert sh(transport, f"cat {shlex.quote(claims)}/job-a").strip() == "4711"


def test_a_claim_names_another_submitters_job_and_runs_nothing(transport: Transport, remote_dir: str) -> None:
    claims = f"{remote_dir}/claims"
    transport.run(Claim(claims, frozenset()).wrap("job-a", ["echo", "4711"]))
    ran = f"{remote_dir}/ran"
    out = transport.run(Claim(claims, frozenset()).wrap("job-a", ["touch", ran])).stdout
    assert out.strip() == "claimed 4711"
    assert sh(transport, f"test -e {shlex.quote(ran)} && echo yes || echo no").strip() == "no"
    # A submitter that saw job 4711 (and found it dead) may submit again.
    assert transport.run(Claim(claims, frozenset({"4711"})).wrap("job-a", ["echo", "4712"])).stdout.strip() == "4712"


def test_a_step_folder_is_written_private_with_the_files_the_relay_reads(transport: Transport, remote_dir: str) -> None:
    folder = f"{remote_dir}/step"
    write_step_folder(transport, folder, b'{"x": 1}', b"{}", b"export A='b c'\n")
    assert sh(transport, f"stat -c %a {shlex.quote(folder)}").strip() == "700"
    listing = sh(transport, f"cd {shlex.quote(folder)} && stat -c '%n %a %s' *")
    files = {name: (mode, size) for name, mode, size in (line.split() for line in listing.splitlines())}
    assert files == {
        "events.jsonl": ("600", "0"),
        "env": ("600", "15"),
        "meta.json": ("600", "2"),
        "step.json": ("600", "8"),
        "stderr": ("600", "0"),
        "stdout": ("600", "0"),
    }


def test_removing_a_run_folder_removes_the_lineage_folder_only_when_no_other_run_is_left(
    transport: Transport, remote_dir: str
) -> None:
    lineage = f"{remote_dir}/lineage"
    sh(transport, f"mkdir -p {shlex.quote(lineage)}/claims {shlex.quote(lineage)}/run-1 {shlex.quote(lineage)}/run-2")
    transport.run(command("remove_run_folder", f"{lineage}/run-1", lineage, "claims"))
    assert sh(transport, f"ls -A {shlex.quote(lineage)}").split() == ["claims", "run-2"]
    transport.run(command("remove_run_folder", f"{lineage}/run-2", lineage, "claims"))
    assert sh(transport, f"test -e {shlex.quote(lineage)} && echo kept || echo gone").strip() == "gone"
