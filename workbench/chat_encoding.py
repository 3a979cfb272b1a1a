"""Chat → token ids with assistant-only labels, and packing: the one definition of the loss mask.

Used by training, validation and the dataset preview alike; it needs a tokenizer, not torch.

Loss masking: when the chat template has ``{% generation %}`` markers we ask the
tokenizer for the assistant mask; when it has none (most hub models) the mask comes
back all zeros, so we fall back to masking the prompt prefix — everything up to the
final assistant turn — which still trains only on what the model should say.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

IGNORE = -100


def has_generation_markers(tokenizer: Any) -> bool:
    return "{% generation %}" in (getattr(tokenizer, "chat_template", None) or "").replace("{%- generation %}", "{% generation %}")


def encode_chat(tokenizer: Any, messages: list[dict[str, str]], max_len: int) -> dict[str, list[int]] | None:
    """One chat → ``input_ids`` and ``labels`` (-100 where no loss); None when nothing is trainable."""
    if has_generation_markers(tokenizer):
        enc = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        ids = list(enc["input_ids"])
        mask = list(enc["assistant_masks"])
    else:
        ids = list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        prompt = tokenizer.apply_chat_template(
            messages[:last], tokenize=True, return_dict=True, add_generation_prompt=True
        )["input_ids"]
        n = len(prompt) if list(ids[: len(prompt)]) == list(prompt) else 0
        mask = [0] * n + [1] * (len(ids) - n)
    ids, mask = ids[:max_len], mask[:max_len]
    labels = [t if m else IGNORE for t, m in zip(ids, mask)]
    if all(l == IGNORE for l in labels):
        return None
    return {"input_ids": ids, "labels": labels}


def encode_all(tokenizer: Any, chats: Iterable[list[dict[str, str]]], max_len: int) -> list[dict[str, list[int]]]:
    out = []
    for messages in chats:
        ex = encode_chat(tokenizer, messages, max_len)
        if ex is not None:
            out.append(ex)
    return out


def pack(examples: Sequence[dict[str, list[int]]], max_len: int) -> list[dict[str, list[int]]]:
    """Greedy first-fit packing into rows of at most ``max_len`` tokens.

    Each packed row carries ``position_ids`` that restart at every example, so
    positions match the unpacked run. The training collator turns those restarts into
    per-example attention (a block-diagonal causal mask, or flash-attention's varlen
    kernel): see :mod:`workbench.training.data`.
    """
    rows: list[dict[str, list[int]]] = []
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    space: list[int] = []
    for i in order:
        ex = examples[i]
        n = len(ex["input_ids"])
        slot = next((r for r, free in enumerate(space) if free >= n), None)
        if slot is None:
            rows.append({"input_ids": [], "labels": [], "position_ids": []})
            space.append(max_len)
            slot = len(rows) - 1
        row = rows[slot]
        row["input_ids"] += ex["input_ids"]
        row["labels"] += ex["labels"]
        row["position_ids"] += list(range(n))
        space[slot] -= n
    return rows


def token_preview(tokenizer: Any, messages: list[dict[str, str]], max_len: int) -> list[dict[str, Any]]:
    """One chat as the tokens training sees: ``[{"text": piece, "trained": bool}, …]``.

    Built from :func:`encode_chat`, so the masking shown is exactly the loss mask used in
    training (an all-masked chat — nothing trainable — shows every token untrained).
    """
    ex = encode_chat(tokenizer, messages, max_len)
    if ex is None:
        ids = list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])[:max_len]
        labels = [IGNORE] * len(ids)
    else:
        ids, labels = ex["input_ids"], ex["labels"]
    return [{"text": tokenizer.decode([t]), "trained": label != IGNORE} for t, label in zip(ids, labels)]
