"""Predict a window's MFCC frames from its piano roll, on a `sendlearn export parquet` folder
(docs/export.md, "Examples").

    sendlearn sequences --data-dir DATA                     # splits sessions 80/10/10 (train/validation/test)
    sendlearn export parquet --data-dir DATA --out PARQUET
    python examples/train_midi_to_audio.py PARQUET

Reads the export with Hugging Face `datasets` alone (nothing from sendlearn). Each row is one stream
in one window: `midi_notes` its notes as (pitch, velocity, start sample, end sample) relative to the
window, `mfcc` its MFCC frames (coefficients x frames, a frame every 512 samples). The piano roll has
one column per MFCC frame: a pitch's velocity / 127 where the note sounds at the frame's sample. A
small 1-D convolutional net maps the roll to the MFCCs (standardized with the train split's mean and
deviation per coefficient); one epoch on `train`, and the `validation` loss (mean squared error)
before and after, then a last line of JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import datasets
import numpy as np
import torch
from torch import nn

HOP = 512  # samples per feature frame (docs/export.md, "features")


def piano_roll(notes: list[list[int]], frames: int) -> np.ndarray:
    """float32 (128, frames): velocity / 127 of every pitch sounding at each frame's first sample."""
    roll = np.zeros((128, frames), dtype=np.float32)
    at = np.arange(frames) * HOP
    for pitch, velocity, start, end in notes:
        roll[pitch, (at >= start) & (at < end)] = velocity / 127
    return roll


def load(split: datasets.Dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    """(piano roll, mfcc) per row: both (channels, frames)."""
    rows = split.select_columns(["midi_notes", "mfcc"])  # the audio column is never read
    out = []
    for row in rows:
        mfcc = np.asarray(row["mfcc"], dtype=np.float32)
        out.append((piano_roll(row["midi_notes"], mfcc.shape[1]), mfcc))
    return out


def pieces(rows: list[tuple[np.ndarray, np.ndarray]], length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every window cut into runs of ``length`` frames (the last one may be shorter)."""
    out = []
    for roll, mfcc in rows:
        for start in range(0, mfcc.shape[1], length):
            out.append((torch.from_numpy(roll[:, start:start + length]), torch.from_numpy(mfcc[:, start:start + length])))
    return out


class RollToMfcc(nn.Module):
    def __init__(self, coefficients: int, width: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(128, width, 5, padding=2), nn.ReLU(),
                                 nn.Conv1d(width, coefficients, 5, padding=2))

    def forward(self, roll: torch.Tensor) -> torch.Tensor:
        return self.net(roll)


def loss_of(model: nn.Module, data: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Mean squared error per value over ``data``."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for roll, mfcc in data:
            total += nn.functional.mse_loss(model(roll[None]), mfcc[None], reduction="sum").item()
            count += mfcc.numel()
    return total / max(count, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", help="a `sendlearn export parquet` folder (with features)")
    parser.add_argument("--length", type=int, default=32, help="frames per training piece (default 32)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)

    # a DatasetDict of the splits the export holds; the folder's absolute path, so that a folder named
    # like one of datasets' own builders ("parquet", "json") is read as the folder it is
    splits = datasets.load_dataset(str(Path(args.export).resolve()))
    if "train" not in splits or "validation" not in splits:
        print(f"{args.export} has splits {sorted(splits)}; this example needs train and validation "
              "(`sendlearn sequences --split` chooses the percentages)", file=sys.stderr)
        return 2
    if "mfcc" not in splits["train"].column_names:
        print(f"{args.export} has no mfcc column: export it without --no-features", file=sys.stderr)
        return 2
    train_rows, validation_rows = load(splits["train"]), load(splits["validation"])
    stacked = np.concatenate([mfcc for _, mfcc in train_rows], axis=1)
    mean, std = stacked.mean(axis=1, keepdims=True), stacked.std(axis=1, keepdims=True) + 1e-6

    def standard(rows: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(roll, ((mfcc - mean) / std).astype(np.float32)) for roll, mfcc in rows]

    train = pieces(standard(train_rows), args.length)
    random.Random(args.seed).shuffle(train)
    validation = pieces(standard(validation_rows), args.length)

    model = RollToMfcc(stacked.shape[0])
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    before = loss_of(model, validation)
    print(f"{len(train_rows)} train windows ({len(train)} pieces of {args.length} frames), "
          f"{len(validation_rows)} validation windows; {stacked.shape[0]} MFCCs")
    print(f"validation loss before: {before:.4f}")
    model.train()
    for roll, mfcc in train:  # one epoch, one piece a step
        optimiser.zero_grad()
        loss = nn.functional.mse_loss(model(roll[None]), mfcc[None])
        loss.backward()
        optimiser.step()
    after = loss_of(model, validation)
    print(f"validation loss after one epoch: {after:.4f}")
    print(json.dumps({"train_windows": len(train_rows), "validation_windows": len(validation_rows),
                      "steps": len(train), "validation_loss_before": before, "validation_loss_after": after}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
