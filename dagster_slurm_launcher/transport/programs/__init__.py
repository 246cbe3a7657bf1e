"""The shell programs this package runs on the login node.

Each is a fixed script in this folder whose header states its arguments, what it reads on
stdin and what it prints. A command runs one with every argument quoted; data (file contents,
file lists, job scripts) travels on stdin, never on the command line.
"""

import shlex
from functools import cache
from importlib.resources import files


@cache
def program(name: str) -> str:
    """The text of program ``name`` (for a program that runs another)."""
    return files(__package__).joinpath(f"{name}.sh").read_text()


def command(name: str, *args: str) -> str:
    """The shell command that runs program ``name`` with ``args`` (``$0`` is the name).

    ``--norc``: bash reads ``~/.bashrc`` even when not interactive if it believes sshd started it
    (stdin a socket, or SSH_CLIENT set, at shell level 1), which a program started as the
    command's last word is; what the file prints would land inside the program's output.
    """
    return shlex.join(["bash", "--norc", "-c", program(name), name, *args])
