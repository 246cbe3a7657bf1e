"""Run commands as sessions of an OpenSSH master connection that a person opened.

Sites that ask for a second factor (a one-time password, a push to a phone) at every login
cannot be used by a process that logs in on its own, and neither can a login tunnelled through
a master (``ProxyJump`` through it is a new login). What works is what users do by hand: log in
once, ``ssh -fNM -S <socket> <host>`` with ``ControlPersist``, and run every command as a session
of that connection (``ssh -S <socket> -o ControlMaster=no``): no login, no prompt. ``BatchMode``
makes sure no command ever waits for a prompt nobody answers.
"""

import random
import shlex
import subprocess
import threading
import time

from dagster_slurm_launcher.retry import RetryDeadlineExceeded, backoff
from dagster_slurm_launcher.settings import ENV_PREFIX, SlurmSettings
from dagster_slurm_launcher.transport.base import CommandInterrupted, CommandResult, Transport, TransportError
from dagster_slurm_launcher.transport.framing import frame, framed_result
from dagster_slurm_launcher.transport.local import command_environment
from dagster_slurm_launcher.transport.ssh import MAX_CHANNELS

# When the master does not take a command (it is gone, or sshd refused it one more session under
# MaxSessions), OpenSSH falls back to a login of its own (mux.c, muxclient). Known-hosts files
# that know no host stop that login at the host key, before any authentication: no failed login
# counts against the user (fail2ban, lockouts), and nothing runs outside the master. Sessions of
# the master never check host keys (the master did, when the user logged in).
_NO_OWN_LOGIN = [
    *("-o", "UserKnownHostsFile=/dev/null", "-o", "GlobalKnownHostsFile=/dev/null"),
    *("-o", "StrictHostKeyChecking=yes"),
]
_OWN_LOGIN_STOPPED = "Host key verification failed"
# The user's ~/.ssh/config for the host must not change what a command is: no pty (it turns \n
# into \r\n and merges stderr into stdout), no RemoteCommand, no forwardings.
_PLAIN = ["-T", "-o", "RemoteCommand=none", "-o", "ClearAllForwardings=yes", "-o", "ForwardX11=no"]


class OpenSSHTransport(Transport):
    """Runs commands over the master connection at ``settings.control_path`` to ``settings.host``."""

    def __init__(self, settings: SlurmSettings) -> None:
        self._settings = settings
        self._sessions = threading.BoundedSemaphore(MAX_CHANNELS)

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float = 600.0) -> CommandResult:
        deadline = time.monotonic() + self._settings.reconnect_timeout
        framed = frame(command)
        with self._sessions:
            while True:
                self._wait_for_master(deadline)
                try:
                    proc = subprocess.run(
                        self._ssh(framed.command),
                        input=stdin or b"",
                        capture_output=True,
                        timeout=timeout,
                        check=False,
                        env=command_environment(),
                    )
                except subprocess.TimeoutExpired as exc:
                    raise CommandInterrupted(
                        f"no answer through {self._where} within {timeout:.0f}s; the command may still run: {command}"
                    ) from exc
                # 255 is ssh's own failure, unless the command itself got to its end.
                if proc.returncode != 255 or framed.finished(proc.stdout):
                    return framed_result(framed, command, proc.returncode, proc.stdout, proc.stderr)
                problem = proc.stderr.decode("utf-8", "replace").strip()
                if framed.started(proc.stdout) or _OWN_LOGIN_STOPPED not in problem:
                    raise CommandInterrupted(
                        f"ssh through {self._where} failed ({problem}); the command may have run: {command}"
                    )
                # The master did not take it, and nothing else ran it: send it again.
                if time.monotonic() > deadline:
                    raise TransportError(f"{self._where} did not take a command ({problem})")
                time.sleep(random.uniform(0.1, 0.5))

    @property
    def _where(self) -> str:
        return f"the master connection {self._settings.control_path} to {self._settings.host}"

    def _ssh(self, *args: str) -> list[str]:
        s = self._settings
        argv = ["ssh", "-S", str(s.control_path), "-o", "ControlMaster=no", "-o", "BatchMode=yes", *_NO_OWN_LOGIN]
        argv += _PLAIN
        if s.port:
            argv += ["-p", str(s.port)]
        if s.user:
            argv += ["-l", s.user]
        return [*argv, "--", str(s.host), *args]

    def _master_alive(self) -> bool:
        check = [*self._ssh()[:-2], "-O", "check", "--", str(self._settings.host)]
        try:
            return subprocess.run(check, capture_output=True, timeout=30, check=False).returncode == 0
        except subprocess.TimeoutExpired:
            return False  # a master that does not answer is as good as gone
        except FileNotFoundError:
            raise TransportError(f"{ENV_PREFIX}TRANSPORT=openssh needs the OpenSSH client (ssh) on PATH") from None

    def _wait_for_master(self, deadline: float) -> None:
        attempt = 0
        while not self._master_alive():
            try:
                backoff(attempt, deadline, f"{self._where} is not open", "waiting for you to log in again")
            except RetryDeadlineExceeded:
                s = self._settings
                login = ["ssh", "-fNM", "-o", "ControlPersist=yes", "-S", str(s.control_path)]
                login += [*(["-p", str(s.port)] if s.port else []), *(["-l", s.user] if s.user else []), str(s.host)]
                raise TransportError(
                    f"{self._where} is not open (waited {ENV_PREFIX}RECONNECT_TIMEOUT). Log in again "
                    f"(with a renewed certificate, if your site issues them): `{shlex.join(login)}`; if ssh "
                    "says the control socket already exists (left by a reboot), remove that file first"
                ) from None
            attempt += 1
