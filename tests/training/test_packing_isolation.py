"""Packed examples never attend across their boundaries: each one's loss packed equals its loss alone."""

from __future__ import annotations

import pytest
import torch

from workbench.chat_encoding import encode_all, pack
from workbench.training.data import Collator

CHATS = [
    [{"role": "user", "content": "Where is my order?"}, {"role": "assistant", "content": "It ships tomorrow."}],
    [{"role": "user", "content": "How do I reset my password?"},
     {"role": "assistant", "content": "Use the link on the sign-in page, then check your email."}],
    [{"role": "user", "content": "Refund please"}, {"role": "assistant", "content": "Done: 3 to 5 days."}],
]


@pytest.fixture(scope="module")
def model_and_examples(engine_home):
    from workbench.models import load_model, load_tokenizer

    torch.set_num_threads(1)
    tok = load_tokenizer("tiny-chat")
    model = load_model("tiny-chat", attn_implementation="sdpa").eval()
    return model, tok, encode_all(tok, CHATS, 256)


def example_losses(model, batch: dict, spans: list[tuple[int, int]]) -> list[float]:
    """Per-example mean next-token loss over its own label tokens, from one forward pass over row 0."""
    batch = {k: v for k, v in batch.items() if k != "num_tokens"}
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}, **(
            {} if "use_cache" in batch else {"use_cache": False})).logits[0].double()
    labels = batch["labels"][0]
    out = []
    for s, e in spans:
        out.append(float(torch.nn.functional.cross_entropy(logits[s:e - 1], labels[s + 1:e], ignore_index=-100)))
    return out


def packed_row(examples):
    rows = pack(examples, 10_000)
    assert len(rows) == 1
    row, spans, at = rows[0], [], 0
    for pos in range(1, len(row["position_ids"]) + 1):  # the spans where the positions restart
        if pos == len(row["position_ids"]) or row["position_ids"][pos] == 0:
            spans.append((at, pos))
            at = pos
    return row, spans


def alone(model, ex) -> float:
    n = len(ex["input_ids"])
    return example_losses(model, Collator(0)([ex]), [(0, n)])[0]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_each_packed_example_has_its_unpacked_loss(model_and_examples, attn: str) -> None:
    model, tok, examples = model_and_examples
    model.set_attn_implementation(attn)
    row, spans = packed_row(examples)
    # a second, shorter row in the batch is padded: its padding is a block of its own
    short = {"input_ids": examples[2]["input_ids"], "labels": examples[2]["labels"],
             "position_ids": list(range(len(examples[2]["input_ids"])))}
    batch = Collator(tok.pad_token_id, isolate=True, count_tokens=True)([row, short])
    assert "attention_mask" not in batch  # the boundaries come from the restarting position ids
    assert int(batch["num_tokens"]) == len(row["input_ids"]) + len(short["input_ids"])
    packed = example_losses(model, batch, spans)
    by_length = {len(e["input_ids"]): e for e in examples}
    expected = [alone(model, by_length[e - s]) for s, e in spans]
    assert len(spans) == 3
    assert max(abs(a - b) for a, b in zip(packed, expected)) < 1e-5, (packed, expected)

    # the short row's loss with padding after it equals its loss alone as well
    n = len(short["input_ids"])
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k not in ("labels", "num_tokens")}).logits[1, :n].double()
    tail = float(torch.nn.functional.cross_entropy(logits[:-1], batch["labels"][1, 1:n], ignore_index=-100))
    assert abs(tail - alone(model, examples[2])) < 1e-5

    shared = example_losses(model, Collator(tok.pad_token_id, isolate=False)([row]), spans)
    assert max(abs(a - b) for a, b in zip(shared[1:], expected[1:])) > 1e-3  # what isolation prevents
    model.set_attn_implementation("sdpa")
