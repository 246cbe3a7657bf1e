"""Benchmark: what shipping a code location and its environment adds to a run.

Run on the lab cluster (after `sudo deploy/lab/up` and `deploy/lab/python-env`):

    set -a; source deploy/lab/lab.env; set +a
    /opt/dagster-slurm-lab/venv/bin/python bench/ship.py [REQUIREMENT ...]   # default: pandas requests pyyaml

For each way of building (pip and uv from the package index, uv from wheels the Dagster host
downloads), into a fresh base folder with the cluster user's installer caches emptied first:
the first run's shipping time (code upload, environment build, the job loaded on the login
node), a warm run's (nothing changed: one command), and a run after one source file changed
(the code uploaded again, the environment kept); with the sizes shipped and built. The code
location is a small project; the environment is this package (with Dagster) plus the
requirements given.
"""

import shlex
import sys
import tempfile
import time
import uuid
from pathlib import Path

from dagster._core.code_pointer import FileCodePointer
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin

from dagster_slurm_launcher import load_settings
from dagster_slurm_launcher.connect import connect
from dagster_slurm_launcher.ship.code import DEFAULT_EXCLUDE
from dagster_slurm_launcher.ship.shipping import ShipConfig, ship

DEFS = """
from dagster import job, op


@op
def work():
    return 1


@job
def bench():
    work()
"""
BASE_PYTHON = "/usr/bin/python3"  # the lab cluster's: standard library only


def project(folder: Path) -> Path:
    (folder / "defs.py").write_text(DEFS)
    (folder / "helpers.py").write_text("VALUE = 1\n")
    for i in range(40):  # a code location of some size: 40 modules of 4 KiB
        (folder / f"module_{i}.py").write_text(f"# module {i}\n" + "x = 1\n" * 680)
    return folder


def timed(what: str, call) -> tuple[float, list[str]]:
    messages: list[str] = []
    started = time.monotonic()
    call(lambda message, metadata: messages.append(message))
    seconds = time.monotonic() - started
    print(f"  {what:34} {seconds:7.2f} s   {messages[-1] if messages else ''}", flush=True)
    for message in messages:
        if message.startswith(("Building", "Shipping")):
            print(f"  {'':34}             {message}")
    return seconds, messages


def main(requirements: list[str]) -> None:
    cluster = connect(load_settings(reconnect_timeout=60))
    transport = cluster.client.transport
    with tempfile.TemporaryDirectory() as tmp:
        root = project(Path(tmp))
        pointer = FileCodePointer(str(root / "defs.py"), "bench", str(root))
        origin = JobPythonOrigin("bench", RepositoryPythonOrigin(sys.executable, pointer))
        print(f"environment: dagster-slurm-launcher + {' '.join(requirements)}; base Python {BASE_PYTHON}")
        rows = []
        for mode, installer in (("build", "pip"), ("build", "uv"), ("wheels", "uv")):
            base = f"{cluster.remote_base_dir}/bench-ship-{uuid.uuid4().hex[:8]}"
            config = ShipConfig(True, None, ("*",), DEFAULT_EXCLUDE, mode, installer, tuple(requirements))
            # A first build on a site: nothing of these packages in the cluster user's caches.
            transport.run('rm -rf -- "$HOME/.cache/pip" "$HOME/.cache/uv"')

            def shipping(report, config=config, base=base):
                ship(config, transport, base, origin, BASE_PYTHON, [], {}, report, "bench")

            print(f"{mode} with {installer}:")
            first, _ = timed("first run (cold caches)", shipping)
            warm, _ = timed("warm run (nothing changed)", shipping)
            (root / "helpers.py").write_text(f"VALUE = {uuid.uuid4().int}\n")
            changed, _ = timed("one source file changed", shipping)
            sizes = transport.run(
                f"du -sk {shlex.quote(base)}/code/* {shlex.quote(base)}/envs/* 2>/dev/null | grep -v -e '[.]stage$'"
            ).stdout.split()
            code_kib = int(sizes[0]) if sizes else 0
            env_kib = int(sizes[-2]) if len(sizes) >= 2 else 0
            print(f"  shipped code {code_kib} KiB per copy; environment {env_kib / 1024:.0f} MiB on the cluster")
            rows.append((f"{mode}/{installer}", first, warm, changed, env_kib / 1024))
            transport.run(f"rm -rf -- {shlex.quote(base)}")
    print()
    print("| mode | first run | warm run | one file changed | environment |")
    print("| --- | --- | --- | --- | --- |")
    for name, first, warm, changed, env_mib in rows:
        print(f"| {name} | {first:.1f} s | {warm:.2f} s | {changed:.2f} s | {env_mib:.0f} MiB |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["pandas", "requests", "pyyaml"])
