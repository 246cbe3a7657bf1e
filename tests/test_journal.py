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
    cut = b'2 {"__class__": "EventLo\n'  # a record cut short, ended by the next writer
    waiting = parse_records(good + cut)
    assert [r.entry.user_message for r in waiting.records] == ["before"]
    assert waiting.consumed == len(good) and waiting.skipped == 0
    write(path, "after")
    after = path.read_bytes()[len(good) :]
    skipped = parse_records(good + cut + after)
    assert [r.entry.user_message for r in skipped.records] == ["before", "after"]
    assert skipped.skipped == 1 and skipped.consumed == len(good + cut + after)
    # Once nothing more can show up (the job ended, the grace period passed), a bad tail is passed over.
    final = parse_records(good + cut, final=True)
    assert final.skipped == 1 and final.consumed == len(good + cut)


def test_nul_bytes_are_data_not_shown_yet_and_are_waited_on(tmp_path: Path) -> None:
    # NFS can show a file's new size before its data: the missing bytes read as NUL.
    path = tmp_path / "events.jsonl"
    write(path, "one", "two", "three", end=True)
    data = path.read_bytes()
    first = data.index(b"\n") + 1
    hole = data[:first] + b"\0" * (len(data) - first - 20) + data[-20:]
    seen = parse_records(hole)
    assert [r.entry.user_message for r in seen.records] == ["one"] and not seen.ended
    assert seen.consumed == first
    later = parse_records(data[seen.consumed :])
    assert [r.entry.user_message for r in later.records] == ["two", "three"] and later.ended


def test_end_counts_only_as_the_last_line(tmp_path: Path) -> None:
    # A requeued job's worker writes after its predecessor's END.
    path = tmp_path / "events.jsonl"
    write(path, "first attempt", end=True)
    assert parse_records(path.read_bytes()).ended
    write(path, "second attempt")
    parsed = parse_records(path.read_bytes())
    assert not parsed.ended and [r.seq for r in parsed.records] == [1, 2]


def test_end_after_an_interrupted_record_stands_on_its_own_line(tmp_path: Path) -> None:
    import os

    path = tmp_path / "events.jsonl"
    writer = JournalWriter(str(path))
    writer.append(entry("whole"))
    os.write(writer._fd, b'2 {"__class__": "Ev')  # what a signal between two writes leaves
    writer._at_line_start = False
    writer.end()
    writer.close()
    parsed = parse_records(path.read_bytes(), final=True)
    assert [r.entry.user_message for r in parsed.records] == ["whole"] and parsed.ended and parsed.skipped == 1


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
        (4, b"456789"),
        (0, None),
        (106, b"\xff tail"),
        (10, b""),
        (100, "ü漢".encode() + b"\xff\xff tail"),
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


def test_the_end_line_says_how_long_the_jobs_output_files_are(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    writer = JournalWriter(str(path))
    writer.append(entry("one"))
    writer.end((1234, 56))
    writer.close()
    parsed = parse_records(path.read_bytes())
    assert parsed.ended and parsed.output_sizes == (1234, 56)
    # A worker whose output is not a file cannot say.
    write(path, "two", end=True)
    parsed = parse_records(path.read_bytes())
    assert parsed.ended and parsed.output_sizes is None and len(parsed.records) == 2


def test_a_packs_end_line_after_a_steps_own_end_gives_the_cause(tmp_path: Path) -> None:
    # A packed step's worker ended its journal (SIGTERM), then the pack's worker said why.
    path = tmp_path / "events.jsonl"
    write(path, "started", end=True)
    writer = JournalWriter(str(path))
    writer.end((12, 34), "exit=143")
    writer.close()
    parsed = parse_records(path.read_bytes())
    assert parsed.ended and parsed.end_cause == "exit=143" and parsed.output_sizes == (12, 34)
    assert parse_records(b"END - - unstarted\n").end_cause == "unstarted"
    assert parse_records(b"END 1 2\n").end_cause is None
