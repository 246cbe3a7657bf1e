"""The journal's format and the framed multi-file read that carries it (real bash, local files)."""

from pathlib import Path

from dagster._core.events.log import EventLogEntry

from dagster_slurm_launcher.journal import JournalWriter, parse_records
from dagster_slurm_launcher.transport import LocalTransport
from dagster_slurm_launcher.transport.files import FileSlice, read_files


def entry(message: str) -> EventLogEntry:
    return EventLogEntry(error_info=None, level=20, user_message=message, run_id="r", timestamp=1.0)


def write(path: Path, *messages: str, end: bool = False) -> None:
    writer = JournalWriter(str(path))
    for message in messages:
        writer.append(entry(message))
    if end:
        writer.end()
    writer.close()


def test_records_are_numbered_private_and_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write(path, "one")
    # A requeued job appends to the same journal: numbering goes on.
    write(path, "two — ünï", end=True)
    parsed = parse_records(path.read_bytes())
    assert [(r.seq, r.entry.user_message) for r in parsed.records] == [(1, "one"), (2, "two — ünï")]
    assert parsed.ended and parsed.consumed == path.stat().st_size
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_line_cut_short_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write(path, "complete")
    data = path.read_bytes() + b'2 {"__class__": "EventLogEn'
    parsed = parse_records(data)
    assert [r.entry.user_message for r in parsed.records] == ["complete"]
    assert parsed.consumed == path.stat().st_size and not parsed.ended


def test_a_writer_after_a_killed_one_starts_on_a_line_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write(path, "first")
    with path.open("ab") as f:
        f.write(b'2 {"__class__": "EventLogEn')  # SIGKILL mid-write
    write(path, "after requeue", end=True)
    parsed = parse_records(path.read_bytes())
    assert [(r.seq, r.entry.user_message) for r in parsed.records] == [(1, "first"), (2, "after requeue")]
    assert parsed.skipped == 0 and parsed.ended


def test_a_damaged_line_is_waited_on_while_last_and_skipped_once_good_lines_follow(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write(path, "before")
    good = path.read_bytes()
    hole = b"\0" * 40 + b"\n"  # what NFS shows where the data has not arrived yet
    waiting = parse_records(good + hole)
    assert [r.entry.user_message for r in waiting.records] == ["before"]
    assert waiting.consumed == len(good) and waiting.skipped == 0
    write(path, "after")
    after = path.read_bytes()[len(good):]
    skipped = parse_records(good + hole + after)
    assert [r.entry.user_message for r in skipped.records] == ["before", "after"]
    assert skipped.skipped == 1 and skipped.consumed == len(good + hole + after)
    # Once nothing more can show up (the job ended, the grace period passed), a bad tail is passed over.
    final = parse_records(good + b"7 {not json}\n", final=True)
    assert final.skipped == 1 and final.consumed == len(good) + len(b"7 {not json}\n")


def test_many_files_are_read_from_their_offsets_in_one_command(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("0123456789")
    (tmp_path / "b").write_bytes(b"x" * 100 + "ü漢".encode() + b"\xff\xff tail")  # invalid UTF-8 too
    slices = [
        FileSlice(str(tmp_path / "a"), offset=4),
        FileSlice(str(tmp_path / "missing")),
        FileSlice(str(tmp_path / "b"), limit=6),
        FileSlice(str(tmp_path / "a"), offset=10),
        FileSlice(str(tmp_path / "b"), offset=100),
    ]
    reads = read_files(LocalTransport(), slices)
    assert [(r.start, r.data) for r in reads] == [
        (4, b"456789"), (0, None), (106, b"\xff tail"), (10, b""), (100, "ü漢".encode() + b"\xff\xff tail"),
    ]


def test_a_read_of_thousands_of_files_fits_one_command(tmp_path: Path) -> None:
    # Paths as long as real step folders': a command line listing them would pass the kernel's 128 KiB.
    deep = tmp_path / ("d" * 200)
    deep.mkdir()
    slices = []
    for i in range(2000):
        path = deep / f"{i:04d}-{'j' * 60}"
        path.write_text(f"journal {i}\n")
        slices.append(FileSlice(str(path)))
    reads = read_files(LocalTransport(), slices)
    assert [r.data for r in reads] == [f"journal {i}\n".encode() for i in range(2000)]
