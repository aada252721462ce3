"""``sendlearn export tokens`` (issue 22, part 3) on real renders (tests/export_session.py): the export read by
``datasets``, the tokenizer loaded by miditok from its own ``tokenizer.json``, every window's ids decoded
back to its notes, and every pitch token's ``token_sample`` the exact sample of a note-on of that pitch."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from export_session import make_data, truth
from sendlearn.cli.main import main
from sendlearn.dataset.window_midi import window_midi
from sendlearn.dataset.windows import Window

TOKENIZERS = ["REMI", "TSD", "MIDILike", "Structured", "CPWord", "Octuple", "MMM", "PerTok"]
PITCH_TOKENS = ("Pitch_", "NoteOn_", "PitchDrum_", "DrumOn_")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("tokens"))


def export(data_dir: Path, out: Path, *flags: str, code: int = 0) -> tuple[dict, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        assert main(["export", "tokens", "--data-dir", str(data_dir), "--out", str(out), *flags]) == code
    return (json.loads(stdout.getvalue()) if code == 0 and "--json" in flags else {}), stderr.getvalue()


def notes_of(window: Window, stream: str) -> list[tuple[int, int, float]]:
    """(pitch, note-on sample clipped to the window, onset in quarter notes on the window's clock)."""
    midi = window_midi(window, stream)
    return [(p, on, float(midi.clock.quarters(on))) for p, _, on, _ in midi.notes.tolist()]


@pytest.mark.parametrize("name", TOKENIZERS)
def test_tokens_decode_to_the_windows_notes_and_each_pitch_token_is_on_its_note_on_sample(
        data_dir: Path, tmp_path: Path, name: str) -> None:
    import datasets
    import miditok

    from sendlearn.dataset.export.tokens import grid_quarters

    summary, _ = export(data_dir, tmp_path / "tok", "--tokenizer", name, "--include-flagged", "--json")
    out = tmp_path / "tok"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "data", "tokenizer.json"]
    assert [p.name for p in (out / "data").iterdir()] == ["train-00000-of-00001.parquet"]
    # the card's YAML: a DatasetDict of its splits (a cache of its own: datasets caches a folder's
    # dataset by the folder's name, not its files, and would hand back an earlier test's rows)
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert list(ds) == ["train"]
    rows = ds["train"]
    assert set(rows["split"]) == {"train"} and len(rows) == summary["samples"] == len(truth(data_dir))
    tokenizer = getattr(miditok, name)(params=out / "tokenizer.json")
    grid = grid_quarters(tokenizer)
    assert f"{grid * 48000 * 60 / 120:g} samples at 120 bpm" in (out / "README.md").read_text()
    expected = truth(data_dir)
    pitch_tokens = events_tokens = 0
    for row in rows:
        window, stream = expected[(row["session"], row["stream"], row["window"])]
        notes = notes_of(window, stream)
        ids, samples = row["input_ids"], row["token_sample"]
        assert len(ids) == len(samples)
        if not notes:
            assert ids == [] and "few_events" in row["flags"]
            continue
        # the token -> sample map: every pitch-carrying token is on the exact sample of a note-on of its
        # pitch, each note-on claimed once; tokens of no event are -1
        sequence = miditok.TokSequence(ids=ids)
        tokenizer.complete_sequence(sequence)
        tokens = [t if isinstance(t, str) else next((s for s in t if s.startswith(PITCH_TOKENS)), t[0])
                  for t in sequence.tokens]
        claimed = set()
        for token, sample in zip(tokens, samples, strict=True):
            if token.startswith(PITCH_TOKENS):
                pitch = int(token.split("_")[1])
                assert (pitch, sample) in {(p, on) for p, on, _ in notes}, (token, sample)
                assert (pitch, sample) not in claimed
                claimed.add((pitch, sample))
                pitch_tokens += 1
            elif token.startswith(("NoteOff_", "DrumOff_")):  # on its note's end (the window's end at most)
                pitch = int(token.split("_")[1])
                ends = {(p, e) for p, _, _, e in window_midi(window, stream).notes.tolist()}
                assert (pitch, sample) in ends, (token, sample)
            elif token.startswith(("PitchBend_", "Pedal_", "PedalOff_")):  # on a captured event of its kind
                events = window.events(stream).to_pylist()
                kind = "pitchwheel" if token.startswith("PitchBend_") else "control_change"
                captured = {e["sample"] for e in events if e["kind"] == kind and (kind == "pitchwheel"
                                                                                  or e["data"][1] == 64)}
                assert sample in captured | {0}, (token, sample)  # 0: the state carried at the start
                events_tokens += 1
            elif token.startswith(("Bar_", "Position_", "TimeShift_", "Rest_", "Family_")):
                assert sample == -1, token
            else:
                assert -1 <= sample <= window.frames  # a note still sounding is closed at the window end
        if row["session"] != "band":
            continue  # the pcm notes of one pitch come closer than a grid step: miditok keeps one per step
        # decoding gives the window's notes: pitches exact, onsets within one grid step (in quarter notes)
        score = tokenizer.decode(ids if tokenizer.one_token_stream else [ids])
        decoded = sorted((n.pitch, n.start / score.ticks_per_quarter) for t in score.tracks for n in t.notes)
        assert sorted(p for p, _ in decoded) == sorted(p for p, _, _ in notes)
        assert len(claimed) == len(notes)
        for pitch, _, quarters in notes:
            assert min(abs(q - quarters) for p, q in decoded if p == pitch) <= grid
    assert pitch_tokens > 100
    # Structured, Octuple and CPWord take no pedal or bend tokens; PerTok no bends here, and the pcm pedal is
    # never released (miditok keeps pedals that end)
    assert events_tokens > 0 or name in ("Structured", "Octuple", "CPWord", "PerTok")


def test_merge_streams_gives_one_multitrack_sequence_per_window_with_programs(data_dir: Path, tmp_path: Path) -> None:
    import miditok
    import pyarrow.parquet as pq

    export(data_dir, tmp_path / "merged", "--tokenizer", "REMI", "--merge-streams", "--include-flagged", "--json")
    table = pq.read_table(tmp_path / "merged" / "data").to_pylist()
    # every piece yields windows: the padded tail window is the last of each session
    assert sorted((r["session"], r["window"]) for r in table) == [("band", k) for k in range(6)] + [
        ("pcm", k) for k in range(3)]
    assert {r["stream"] for r in table} == {"bass+lead+loud+quiet", "s16+s24"}
    tokenizer = miditok.REMI(params=tmp_path / "merged" / "tokenizer.json")
    band = next(r for r in table if (r["session"], r["window"]) == ("band", 0))
    from sendlearn.dataset import Dataset

    window = next(iter(Dataset(data_dir).windows("band")))
    score = tokenizer.decode(band["input_ids"])
    assert sum(len(t.notes) for t in score.tracks) == sum(len(notes_of(window, s)) for s in window.streams)
    onsets = {on for s in window.streams for _, on, _ in notes_of(window, s)}
    assert {s for s in band["token_sample"] if s >= 0} >= onsets


def test_bad_input_exits_2_with_the_reason_and_a_stopped_export_leaves_nothing(data_dir: Path,
                                                                                tmp_path: Path) -> None:
    from sendlearn.errors import MissingExtra

    _, err = export(data_dir, tmp_path / "a", "--tokenizer", "GPT", code=2)
    assert "GPT" in err and all(name in err for name in TOKENIZERS)
    _, err = export(data_dir, tmp_path / "b", code=2)
    assert "needs --tokenizer" in err
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"pitch_range": [90, 20]}))
    _, err = export(data_dir, tmp_path / "c", "--tokenizer", "REMI", "--tokenizer-config", str(config), code=2)
    assert "miditok refuses" in err and "pitch_range" in err  # miditok's own words
    config.write_text(json.dumps({"use_programs": False}))
    _, err = export(data_dir, tmp_path / "d", "--tokenizer", "TSD", "--tokenizer-config", str(config),
                    "--merge-streams", code=2)
    assert "--merge-streams" in err and "one sequence per track" in err
    _, err = export(data_dir, tmp_path / "e", "--merge-streams", code=2)  # not for `export parquet` either
    assert main(["export", "parquet", "--data-dir", str(data_dir), "--out", str(tmp_path / "f"),
                 "--tokenizer", "REMI"]) == 2
    missing = MissingExtra.from_import(ImportError("No module named 'miditok'", name="miditok"), "export tokens")
    assert missing is not None and str(missing) == \
        "export tokens needs miditok, which this install lacks (pip install 'sendlearn[export]')"
    # flagged windows (every band window) left out unless asked, and with them the one without notes
    summary, _ = export(data_dir, tmp_path / "g", "--tokenizer", "REMI", "--json")
    assert summary["samples"] == 6 and summary["skipped_windows"] == 6  # windows, as the other exports count them


@pytest.mark.parametrize("sig", ["SIGTERM"])
def test_a_stopped_tokens_export_exits_0_and_leaves_nothing(data_dir: Path, tmp_path: Path, sig: str) -> None:
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "tok"
    # 0.05 s windows cut now (their flags worked out from the audio): hundreds of rows
    child = subprocess.Popen([sys.executable, "-m", "sendlearn", "export", "tokens", "--tokenizer", "REMI",
                              "--data-dir", str(data_dir), "--session", "band", "--out", str(out),
                              "--include-flagged", "--window", "0.05", "--overlap", "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while not (out / "data").exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert child.poll() is None, "the export ended before it could be stopped"
    child.send_signal(getattr(signal, sig))
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 0, stderr.decode()
    assert list(out.iterdir()) == [], stderr.decode()
    assert b"stopped; nothing of the tokens export is left" in stderr
