"""The shell programs this package runs on the login node.

Each is a fixed script in this folder whose header states its arguments, what it reads on
stdin and what it prints. A command runs one with every argument quoted; data (file contents,
file lists, job scripts) travels on stdin, never on the command line.
"""

import shlex
from functools import cache
from importlib.resources import files


@cache
def _program(name: str) -> str:
    return files(__package__).joinpath(f"{name}.sh").read_text()


def command(name: str, *args: str) -> str:
    """The shell command that runs program ``name`` with ``args`` (``$0`` is the name)."""
    return shlex.join(["bash", "-c", _program(name), name, *args])
