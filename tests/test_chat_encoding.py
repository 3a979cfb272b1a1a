"""The loss mask and packing: what every model trains on.

Most hub models' chat templates have no ``{% generation %}`` markers, so the mask falls back to
the prompt prefix. Tested here with tiny-chat's tokenizer with its markers taken out (the
real-weights test does the same on SmolLM2's own template), and packing on real encodings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from workbench.chat_encoding import IGNORE, encode_all, encode_chat, has_generation_markers, pack

CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And of Italy?"},
        {"role": "assistant", "content": "Rome."}]


@pytest.fixture(scope="module")
def plain_tokenizer(tiny_chat_dir: Path) -> Any:
    """tiny-chat's tokenizer with a template like most hub models': no generation markers."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_chat_dir))
    assert has_generation_markers(tok)
    tok.chat_template = re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "", tok.chat_template)
    assert not has_generation_markers(tok)
    return tok


def test_without_markers_the_prompt_prefix_is_masked(plain_tokenizer: Any) -> None:
    ex = encode_chat(plain_tokenizer, CHAT, 512)
    assert ex is not None
    prompt = plain_tokenizer.apply_chat_template(CHAT[:4], tokenize=True, return_dict=True,
                                                 add_generation_prompt=True)["input_ids"]
    n = len(prompt)
    assert ex["input_ids"][:n] == list(prompt)
    assert ex["labels"][:n] == [IGNORE] * n  # system, both user turns and the first reply: no loss
    assert ex["labels"][n:] == ex["input_ids"][n:] and len(ex["labels"]) > n  # the last reply is trained
    assert "Rome" in plain_tokenizer.decode(ex["input_ids"][n:])
    assert "Paris" not in plain_tokenizer.decode(ex["input_ids"][n:])


def test_a_chat_cut_before_its_reply_is_not_trainable(plain_tokenizer: Any) -> None:
    prompt_len = len(plain_tokenizer.apply_chat_template(CHAT[:4], tokenize=True, return_dict=True,
                                                         add_generation_prompt=True)["input_ids"])
    assert encode_chat(plain_tokenizer, CHAT, prompt_len) is None


def test_with_markers_every_assistant_turn_is_trained(tiny_chat_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_chat_dir))
    ex = encode_chat(tok, CHAT, 512)
    trained = tok.decode([t for t, label in zip(ex["input_ids"], ex["labels"]) if label != IGNORE])
    assert "Paris" in trained and "Rome" in trained and "France" not in trained


def test_pack_fits_examples_into_rows_and_restarts_positions(plain_tokenizer: Any) -> None:
    chats = [[{"role": "user", "content": "q" * (i % 7 + 1)}, {"role": "assistant", "content": "a" * (i % 5 + 1)}]
             for i in range(40)]
    examples = encode_all(plain_tokenizer, chats, 64)
    rows = pack(examples, 64)
    assert len(rows) < len(examples)  # packing saves rows
    assert all(len(r["input_ids"]) == len(r["labels"]) == len(r["position_ids"]) <= 64 for r in rows)
    # every example is in exactly one row, whole, with positions 0..n-1
    pieces = []
    for r in rows:
        starts = [i for i, p in enumerate(r["position_ids"]) if p == 0] + [len(r["position_ids"])]
        for a, b in zip(starts, starts[1:]):
            assert r["position_ids"][a:b] == list(range(b - a))
            pieces.append((tuple(r["input_ids"][a:b]), tuple(r["labels"][a:b])))
    assert sorted(pieces) == sorted((tuple(e["input_ids"]), tuple(e["labels"])) for e in examples)
    assert sum(len(r["input_ids"]) for r in rows) == sum(len(e["input_ids"]) for e in examples)
