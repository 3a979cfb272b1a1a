"""Batches for the Trainer: the padding collator. The encoding itself is :mod:`workbench.chat_encoding`.

Packed rows (made by :func:`workbench.chat_encoding.pack`, with ``position_ids`` that restart at
every example) are isolated by default: the batch carries no ``attention_mask``, and transformers
then reads the example boundaries from the restarting ``position_ids`` and builds a
block-diagonal causal mask (sdpa, eager) or runs flash-attention-2's varlen kernel on them — the
way HF's ``DataCollatorWithFlattening`` works. The padding tail of a row gets positions that
restart at 0, a block of its own, so no real token attends to padding either. Such a batch also
says ``use_cache=False``: transformers reads packed boundaries only when no KV cache is in play. With
``isolate=False`` the row keeps one attention mask over all of it (shared attention, for comparisons).

With ``count_tokens`` every batch also carries ``num_tokens`` (the real, non-padding tokens), which
the engine's Trainer subclass pops for its counters before the model sees the batch.
"""

from __future__ import annotations

import torch

from ..chat_encoding import IGNORE

NUM_TOKENS = "num_tokens"


class Collator:
    """Pads a batch to its longest row (dynamic padding), labels with -100."""

    def __init__(self, pad_id: int, isolate: bool = True, count_tokens: bool = False):
        self.pad_id = pad_id
        self.isolate = isolate
        self.count_tokens = count_tokens

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        pos = torch.zeros((len(batch), width), dtype=torch.long)
        packed = self.isolate and any("position_ids" in b for b in batch)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = torch.tensor(b["labels"])
            attn[i, :n] = 1
            pos[i, :n] = torch.tensor(b.get("position_ids") or list(range(n)))
            if packed:
                pos[i, n:] = torch.arange(width - n)  # the padding: a block of its own
        out = {"input_ids": ids, "labels": labels, "position_ids": pos}
        if self.count_tokens:
            out[NUM_TOKENS] = attn.sum()
        if packed:
            out["use_cache"] = False  # with a KV cache transformers ignores the restarting positions: no isolation
        else:
            out["attention_mask"] = attn
        return out
