"""An upload that loses its connection mid-way resumes where the cluster's copy ends, and what
appears under the final name is the whole archive. The real programs run locally (bash); only
the loss of a command's answer is staged."""

import io
import tarfile
from pathlib import Path

from dagster_slurm_launcher.ship import upload as upload_module
from dagster_slurm_launcher.ship.upload import upload
from dagster_slurm_launcher.transport import CommandInterrupted, CommandResult
from dagster_slurm_launcher.transport.local import LocalTransport


class LosesAnswers(LocalTransport):
    """Runs every command, and loses the answer of the chunks numbered in ``lost`` (as a
    connection that drops after the cluster appended them)."""

    def __init__(self, lost: set[int]) -> None:
        self.lost = lost
        self.chunks = 0

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float = 600.0) -> CommandResult:
        result = super().run(command, stdin=stdin, timeout=timeout)
        if "receive_chunk" in command and stdin:
            self.chunks += 1
            if self.chunks in self.lost:
                raise CommandInterrupted("connection lost after the chunk was sent")
        return result


def archive(size: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("data.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(bytes(range(256)) * (size // 256)))
    return buffer.getvalue()


def test_an_upload_whose_answers_are_lost_resumes_and_unpacks_whole(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(upload_module, "CHUNK_BYTES", 64 * 1024)
    data = archive(256 * 1024)  # 5 chunks of 64 KiB (the tar's headers make a fifth)
    transport = LosesAnswers(lost={2, 4})
    progress: list[int] = []
    final = tmp_path / "code" / "abc"
    assert upload(transport, data, str(final), lambda done, total: progress.append(done)) is True
    assert (final / "data.bin").read_bytes() == bytes(range(256)) * 1024
    assert progress[-1] == len(data) and transport.chunks == 5  # no chunk sent twice
    assert not list((tmp_path / "code" / ".incoming").iterdir())
