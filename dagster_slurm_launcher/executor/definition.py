"""slurm_executor: the executor a code location names.

Step workers load the code location too, on compute nodes: importing this module imports only
the executor's config schema. What runs the steps, and the SSH and settings stack it needs, is
imported when Dagster creates the executor for a run, on the Dagster host.
"""

from dagster import Executor, InitExecutorContext, executor, multiple_process_executor_requirements

from dagster_slurm_launcher.executor.config import CONFIG_SCHEMA


@executor(name="slurm", config_schema=CONFIG_SCHEMA, requirements=multiple_process_executor_requirements())
def slurm_executor(init_context: InitExecutorContext) -> Executor:
    """Run each step of a job as its own Slurm job, submitted over SSH or on the login node.

    Settings not given in the config come from ``DAGSTER_SLURM_*`` environment variables.
    An op or asset can override the sbatch options with a tag::

        @asset(op_tags={"dagster-slurm/sbatch": {"cpus_per_task": 8, "mem": "32G", "time": "04:00:00"}})

    Example:
        .. code-block:: python

            defs = Definitions(
                assets=[...],
                executor=slurm_executor.configured({"partition": "debug", "time": "00:30:00"}),
            )
    """
    from dagster_slurm_launcher.executor.executor import create_executor

    return create_executor(init_context, unconfigured=init_context.executor_def is slurm_executor)
