"""Batches for the Trainer: the padding collator. The encoding itself is :mod:`workbench.chat_encoding`."""

from __future__ import annotations

import torch

from ..chat_encoding import IGNORE


class Collator:
    """Pads a batch to its longest row (dynamic padding), labels with -100."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        pos = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = torch.tensor(b["labels"])
            attn[i, :n] = 1
            pos[i, :n] = torch.tensor(b.get("position_ids") or list(range(n)))
        return {"input_ids": ids, "labels": labels, "attention_mask": attn, "position_ids": pos}
