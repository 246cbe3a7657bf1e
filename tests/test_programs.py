"""The shell programs the package runs on the login node do what their headers say, there.

(The multi-file reader's own tests are in test_journal.py.)"""

import shlex

import pytest

from dagster_slurm_launcher.slurm import Claim, PackMember
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


def test_a_pack_claims_all_its_steps_names_or_none(transport: Transport, remote_dir: str) -> None:
    claims = f"{remote_dir}/claims"
    transport.run(Claim(claims, frozenset()).wrap("step-b", ["echo", "4711"]))
    members = [PackMember("step-a", frozenset(), "/p/a.0"), PackMember("step-b", frozenset(), "/p/b.0")]
    ran = f"{remote_dir}/ran"
    # step-b is another submitter's: nothing is submitted, and step-a stays unclaimed.
    assert transport.run(Claim(claims, frozenset(), members).wrap("pack", ["touch", ran])).stdout.strip() == (
        "claimed 4711"
    )
    assert sh(transport, f"ls {shlex.quote(claims)}").split() == ["step-b"]
    # Knowing 4711, the pack goes ahead and records its id and each step's folder.
    members[1] = PackMember("step-b", frozenset({"4711"}), "/p/b.0")
    assert transport.run(Claim(claims, frozenset(), members).wrap("pack", ["echo", "4712"])).stdout.strip() == "4712"
    assert sh(transport, f"cat {shlex.quote(claims)}/step-a {shlex.quote(claims)}/step-b").split("\n")[:2] == [
        "4712 /p/a.0",
        "4712 /p/b.0",
    ]
    # A single job's claim reads the pack's record by its id.
    assert transport.run(Claim(claims, frozenset({"4712"})).wrap("step-a", ["echo", "4713"])).stdout.strip() == "4713"


def test_removing_a_run_folder_removes_the_lineage_folder_only_when_no_other_run_is_left(
    transport: Transport, remote_dir: str
) -> None:
    lineage = f"{remote_dir}/lineage"
    sh(transport, f"mkdir -p {shlex.quote(lineage)}/claims {shlex.quote(lineage)}/run-1 {shlex.quote(lineage)}/run-2")
    transport.run(command("remove_run_folder", f"{lineage}/run-1", lineage, "claims"))
    assert sh(transport, f"ls -A {shlex.quote(lineage)}").split() == ["claims", "run-2"]
    transport.run(command("remove_run_folder", f"{lineage}/run-2", lineage, "claims"))
    assert sh(transport, f"test -e {shlex.quote(lineage)} && echo kept || echo gone").strip() == "gone"


def test_an_upload_resumes_where_the_clusters_copy_ends(transport: Transport, remote_dir: str) -> None:
    part = f"{remote_dir}/.incoming/x.tar"
    assert transport.run(command("receive_chunk", part, "0"), stdin=b"abc").stdout.strip() == "3"
    # The sender lost the answer and sends the chunk again: refused, with where the file ends.
    again = transport.run(command("receive_chunk", part, "0"), stdin=b"abc")
    assert again.exit_code == 3 and again.stdout.strip() == "3"
    assert transport.run(command("receive_chunk", part, "3"), stdin=b"def").stdout.strip() == "6"
    assert sh(transport, f"cat {shlex.quote(part)}") == "abcdef"


def test_a_finished_upload_appears_under_its_final_name_only_whole_and_checked(
    transport: Transport, remote_dir: str
) -> None:
    import hashlib
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("defs.py")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"x\n"))
    data = buffer.getvalue()
    final = f"{remote_dir}/code/abc"
    for part, sha in ((f"{remote_dir}/.incoming/bad.tar", "0" * 64), (f"{remote_dir}/.incoming/good.tar", None)):
        transport.run(command("receive_chunk", part, "0"), stdin=data)
        result = transport.run(command("unpack_upload", part, final, sha or hashlib.sha256(data).hexdigest()))
        if sha:  # a corrupted upload is refused, and nothing shows under the final name
            assert result.exit_code != 0 and "checksum" in result.stderr
            assert sh(transport, f"test -e {shlex.quote(final)} && echo yes || echo no").strip() == "no"
        else:
            assert result.stdout.strip() == "unpacked"
    assert sh(transport, f"ls -A {shlex.quote(final)}").split() == [".complete", "defs.py"]
    # Another run shipping the same content finds it there.
    transport.run(command("receive_chunk", f"{remote_dir}/.incoming/again.tar", "0"), stdin=data)
    sha = hashlib.sha256(data).hexdigest()
    again = transport.run(command("unpack_upload", f"{remote_dir}/.incoming/again.tar", final, sha))
    assert again.stdout.strip() == "present"
    assert sh(transport, f"ls -A {shlex.quote(remote_dir)}/.incoming").split() == []
