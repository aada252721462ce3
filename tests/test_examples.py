"""The worked examples (issue 22, part 5): examples/train_midi_to_audio.py on a parquet export and
examples/train_tokens.py on a tokens export of a small rendered corpus, each run as a user runs it (its
own process, nothing of sendlearn imported), each lowering its validation loss in one epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sendlearn.cli.main import main
from split_corpus import render_corpus

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# split 60/40/0 by their ids' hashes: s01 and s04 in validation, the other four in train
SESSIONS = [f"s{i:02d}" for i in range(6)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = render_corpus(tmp_path_factory.mktemp("examples") / "data", SESSIONS, seconds=4.0)
    assert main(["sequences", "--data-dir", str(data_dir), "--window", "2", "--overlap", "0.5", "--min-events", "1",
                 "--split", "60/40/0", "--workers", "2", "--json"]) == 0
    return data_dir


def run_example(script: str, export: Path, home: Path) -> tuple[dict, str]:
    env = {**os.environ, "HF_HOME": str(home), "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": ""}
    # as a user types it: the folder's name, relative (named "parquet" like datasets' own builder)
    done = subprocess.run([sys.executable, str(EXAMPLES / script), export.name], capture_output=True, text=True,
                          env=env, timeout=300, cwd=export.parent)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stdout


@pytest.mark.parametrize(("script", "fmt", "flags"), [
    ("train_midi_to_audio.py", "parquet", []),
    ("train_tokens.py", "tokens", ["--tokenizer", "REMI"]),
])
def test_example_lowers_its_validation_loss(corpus: Path, tmp_path: Path, script: str, fmt: str,
                                            flags: list[str]) -> None:
    out = tmp_path / fmt
    assert main(["export", fmt, "--data-dir", str(corpus), "--out", str(out), *flags, "--json"]) == 0
    source = (EXAMPLES / script).read_text()
    assert "sendlearn" not in "".join(line for line in source.splitlines() if line.startswith(("import", "from")))
    result, shown = run_example(script, out, tmp_path)
    print(shown)
    assert result["train_windows"] > 0 and result["validation_windows"] > 0
    assert result["validation_loss_after"] < result["validation_loss_before"]
