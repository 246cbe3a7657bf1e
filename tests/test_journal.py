"""The journal's format and the framed multi-file read that carries it (real bash, local files)."""

from pathlib import Path

from dagster._core.events.log import EventLogEntry

from dagster_slurm_launcher.journal import JournalWriter, parse_records
from dagster_slurm_launcher.transport import LocalTransport
from dagster_slurm_launcher.transport.files import FileSlice, parse_files_output, read_files_command


def entry(message: str) -> EventLogEntry:
    return EventLogEntry(error_info=None, level=20, user_message=message, run_id="r", timestamp=1.0)


def test_records_are_numbered_private_and_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    writer = JournalWriter(str(path))
    writer.append(entry("one"))
    writer.close()
    # A requeued job appends to the same journal: numbering goes on.
    writer = JournalWriter(str(path))
    writer.append(entry("two — ünï"))
    writer.close()
    records, consumed = parse_records(path.read_text())
    assert [(r.seq, r.entry.user_message) for r in records] == [(1, "one"), (2, "two — ünï")]
    assert consumed == path.stat().st_size  # ASCII on disk: byte and character offsets agree
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_line_cut_short_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    writer = JournalWriter(str(path))
    writer.append(entry("complete"))
    writer.close()
    text = path.read_text() + '3 {"__class__": "EventLogEn'
    records, consumed = parse_records(text)
    assert [r.entry.user_message for r in records] == ["complete"]
    assert consumed == len(path.read_text())


def test_many_files_are_read_from_their_offsets_in_one_command(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("0123456789")
    (tmp_path / "b").write_text("x" * 100 + "tail")
    slices = [
        FileSlice(str(tmp_path / "a"), offset=4),
        FileSlice(str(tmp_path / "missing")),
        FileSlice(str(tmp_path / "b"), limit=4),
        FileSlice(str(tmp_path / "a"), offset=10),
    ]
    result = LocalTransport().run(read_files_command(slices))
    reads = list(parse_files_output(slices, result.stdout))
    assert [(r.start, r.data) for r in reads] == [(4, "456789"), (0, None), (100, "tail"), (10, "")]
