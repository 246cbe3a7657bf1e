"""A command's output is what it wrote, whatever the login shell's start-up files print around it."""

import subprocess

from dagster_slurm_launcher.transport.framing import frame, framed_result


def run_in_noisy_shell(command: str) -> tuple[int, bytes, bytes]:
    """As sshd runs a command: through a shell whose start-up prints on stdout and stderr first."""
    noisy = "echo 'Welcome. Quota: 80% used'; echo 'module: warning' >&2\n"
    proc = subprocess.run(["bash", "-c", noisy + command], capture_output=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def test_the_shells_banners_are_kept_apart_from_the_commands_output() -> None:
    framed = frame("TZ=UTC date +%Y; echo err >&2")
    result = framed_result(framed, "date", *run_in_noisy_shell(framed.command))
    assert result.stdout.strip().isdigit() and result.stderr == "err\n" and result.ok
    assert result.shell_noise == "Welcome. Quota: 80% used\nmodule: warning\n"


def test_exit_status_and_bytes_without_a_final_newline_survive() -> None:
    framed = frame("printf 'a\\0b'; exit 7")
    result = framed_result(framed, "c", *run_in_noisy_shell(framed.command))
    assert (result.output, result.exit_code) == (b"a\0b", 7)


def test_output_that_mentions_a_marker_of_another_call_is_kept_whole() -> None:
    other = frame("true")
    framed = frame(f"printf '%s\\n' {other.marker.decode()}")
    result = framed_result(framed, "c", *run_in_noisy_shell(framed.command))
    assert result.output == other.marker + b"\n"


def test_output_without_the_opening_marker_is_left_whole() -> None:
    # What a login shell that cannot run the command (csh, say) leaves: its own error.
    framed = frame("true")
    result = framed_result(framed, "c", 127, b"", b"csh: Badly placed ()'s.\n")
    assert (result.stderr, result.exit_code) == ("csh: Badly placed ()'s.\n", 127)
