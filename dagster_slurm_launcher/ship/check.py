"""``python -m dagster_slurm_launcher.ship.check``: run on the login node with the shipped
environment, in the shipped code folder. Loads the run's job as a step worker does (stdin: the
job's origin, the steps' environment variables and import paths, as JSON); exits 1 with the
loader's traceback if it cannot."""

import json
import os
import sys
import traceback

from dagster import deserialize_value

from dagster_slurm_launcher.dagster_internals import JobPythonOrigin, recon_job_from_origin


def main() -> int:
    spec = json.loads(sys.stdin.read())
    os.environ.update(spec["env"])
    sys.path[:0] = spec["python_path"]
    origin = deserialize_value(spec["origin"], JobPythonOrigin)
    try:
        recon_job_from_origin(origin).get_definition()
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
