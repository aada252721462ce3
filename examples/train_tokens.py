"""Train a small next-token model on a `sendlearn export tokens` folder (docs/export.md, "Examples").

    sendlearn sequences --data-dir DATA                     # splits sessions 80/10/10 (train/validation/test)
    sendlearn export tokens --tokenizer REMI --data-dir DATA --out TOKENS
    python examples/train_tokens.py TOKENS

Reads the export with Hugging Face `datasets` alone (nothing from sendlearn): one row per window and
stream, `input_ids` its tokens. Trains a one-layer LSTM to predict each next token, one epoch over
`train`, and prints the `validation` loss (mean cross-entropy per token) before and after, and a last
line of JSON. Every session's windows are in one split, so validation music was never trained on.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import datasets
import torch
from torch import nn


def chunks(rows: list[list[int]], length: int) -> list[list[int]]:
    """Each window's ids in pieces of ``length + 1`` (input and its next-token target), the last
    one shorter; windows of fewer than two tokens give nothing."""
    out = []
    for ids in rows:
        for start in range(0, max(len(ids) - 1, 0), length):
            piece = ids[start:start + length + 1]
            if len(piece) >= 2:
                out.append(piece)
    return out


def batches(pieces: list[list[int]], size: int, pad: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for start in range(0, len(pieces), size):
        group = pieces[start:start + size]
        width = max(len(p) for p in group)
        grid = torch.full((len(group), width), pad, dtype=torch.long)
        for row, piece in enumerate(group):
            grid[row, :len(piece)] = torch.tensor(piece)
        target = grid[:, 1:].clone()
        target[target == pad] = -100  # padding is not a token to predict
        out.append((grid[:, :-1], target))
    return out


class NextToken(nn.Module):
    def __init__(self, vocab: int, width: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab + 1, width)  # one more: the padding id
        self.lstm = nn.LSTM(width, width, batch_first=True)
        self.out = nn.Linear(width, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(self.embed(ids))
        return self.out(hidden)


def loss_of(model: nn.Module, data: list[tuple[torch.Tensor, torch.Tensor]], vocab: int) -> float:
    """Mean cross-entropy per predicted token over ``data``."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, target in data:
            logits = model(ids)
            total += nn.functional.cross_entropy(logits.reshape(-1, vocab), target.reshape(-1),
                                                 ignore_index=-100, reduction="sum").item()
            count += int((target != -100).sum())
    return total / max(count, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", help="a `sendlearn export tokens` folder")
    parser.add_argument("--length", type=int, default=32, help="tokens per training sequence (default 32)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-2)
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
    rows = {name: [list(ids) for ids in splits[name]["input_ids"]] for name in ("train", "validation")}
    if any(ids and isinstance(ids[0], list) for ids in rows["train"]):
        print("compound tokens (CPWord, Octuple): this example reads one id per token", file=sys.stderr)
        return 2
    vocab = 1 + max(max(ids, default=0) for name in rows for ids in rows[name])
    train_pieces = chunks(rows["train"], args.length)
    random.Random(args.seed).shuffle(train_pieces)
    train = batches(train_pieces, args.batch_size, vocab)
    validation = batches(chunks(rows["validation"], args.length), args.batch_size, vocab)

    model = NextToken(vocab)
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    before = loss_of(model, validation, vocab)
    print(f"{len(rows['train'])} train windows ({len(train)} batches), {len(rows['validation'])} validation "
          f"windows; vocabulary {vocab}")
    print(f"validation loss before: {before:.4f}")
    model.train()
    for ids, target in train:  # one epoch
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(model(ids).reshape(-1, vocab), target.reshape(-1), ignore_index=-100)
        loss.backward()
        optimiser.step()
    after = loss_of(model, validation, vocab)
    print(f"validation loss after one epoch: {after:.4f}")
    print(json.dumps({"train_windows": len(rows["train"]), "validation_windows": len(rows["validation"]),
                      "vocab": vocab, "steps": len(train), "validation_loss_before": before,
                      "validation_loss_after": after}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
