"""A quiet terminal (issue 27, part 5): what the hosts print goes into a log per input under the
data dir, never onto the terminal; the command names the inputs whose hosts printed; --verbose
shows the prints live. Real renders through amsynth (a VST2 that prints as it loads) in real
`sendlearn` processes, so the C-level descriptors are the ones a user's terminal would get."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from midi_files import write_tune

AMSYNTH = "plugin:/usr/lib/vst/amsynth_vst.so"
SENDLEARN = [sys.executable, "-m", "sendlearn"]
HOST_LINE = "Attempting to load VST"  # what DawDreamer prints as it loads a VST2


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    write_tune(folder / "one.mid", [(0, 60, 100), (480, 64, 100)])
    write_tune(folder / "two.mid", [(0, 67, 100), (240, 72, 100)])
    return folder


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SENDLEARN, *args], capture_output=True, text=True, timeout=300)


def test_a_render_keeps_host_prints_in_the_inputs_log_and_names_it(corpus: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = run("render", str(corpus / "one.mid"), "--instrument", AMSYNTH, "--data-dir", str(data), "--json")
    assert done.returncode == 0, done.stderr
    log = data / "renders" / "one.log"
    assert HOST_LINE in log.read_text()  # the host printed, into the log
    assert HOST_LINE not in done.stderr and HOST_LINE not in done.stdout
    # stderr holds only our own line naming the input and its log; stdout only the JSON object
    assert done.stderr.strip().splitlines() == [f"hosts printed while rendering 1 input(s): "
                                                f"{corpus / 'one.mid'} ({log})"]
    report = json.loads(done.stdout)
    assert [s["host_log"] for s in report["streams"]] == [str(log)]


def test_a_host_that_prints_nothing_leaves_no_log(corpus: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = run("render", str(corpus / "one.mid"), "--data-dir", str(data), "--json")  # the Faust default: quiet
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and not list(data.glob("renders/*"))
    assert [s["host_log"] for s in json.loads(done.stdout)["streams"]] == [None]


def test_a_batch_keeps_each_inputs_prints_in_its_own_log(corpus: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = run("render", str(corpus), "--instrument", AMSYNTH, "--workers", "2", "--data-dir", str(data), "--json")
    assert done.returncode == 0, done.stderr
    logs = sorted(p.name for p in (data / "renders").iterdir())
    assert logs == ["one.log", "two.log"]
    for name in logs:
        assert HOST_LINE in (data / "renders" / name).read_text()
    assert HOST_LINE not in done.stderr
    assert done.stderr.count("hosts printed while rendering 2 input(s)") == 1
    assert {s["session"]: Path(s["host_log"]).name for s in json.loads(done.stdout)["streams"]} == {
        "one": "one.log", "two": "two.log"}


def test_verbose_shows_the_prints_live_and_writes_no_log(corpus: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = run("render", str(corpus / "one.mid"), "--instrument", AMSYNTH, "--data-dir", str(data), "--json",
               "--verbose")
    assert done.returncode == 0, done.stderr
    assert HOST_LINE in done.stderr and HOST_LINE not in done.stdout
    assert json.loads(done.stdout)["ok"]  # stdout is still the one JSON object
    assert not list(data.glob("renders/*"))
