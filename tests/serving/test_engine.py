"""The local engine on tiny-chat: batching that changes no answer, per-row stops, a bounded queue,
adapters that come and go between batches, and a close that leaves nobody waiting."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import pytest

from workbench.errors import Conflict, Unavailable
from workbench.serving.engine import Engine, GenRequest


@pytest.fixture(scope="module")
def engine(tiny_chat_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(tiny_chat_dir)
    e = Engine(str(tiny_chat_dir), AutoModelForCausalLM.from_pretrained(tiny_chat_dir).eval(), tok, max_batch=8)
    yield e
    e.close()


def ids(engine: Engine, text: str) -> list[int]:
    chat = engine.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                add_generation_prompt=True)
    return engine.tokenizer(chat, add_special_tokens=False).input_ids


def test_a_batch_answers_exactly_as_each_request_alone(engine: Engine) -> None:
    prompts = ["What is the capital of France?", "hi", "Tell me about cats and dogs and birds.", "Paris?"]
    alone = [engine.generate(GenRequest(ids(engine, p), 20 + i, sink=None)) for i, p in enumerate(prompts)]
    boxes = [queue.SimpleQueue() for _ in prompts]
    busy: queue.SimpleQueue = queue.SimpleQueue()
    before = engine.batches
    with engine._lock:  # the thread waits with a long request in hand; the four queue up behind it
        engine.submit(GenRequest(ids(engine, "Once"), 50, sink=busy.put, ignore_eos=True))
        while engine._queue.qsize():
            threading.Event().wait(0.001)
        reqs = [engine.submit(GenRequest(ids(engine, p), 20 + i, sink=b.put))
                for i, (p, b) in enumerate(zip(prompts, boxes, strict=True))]
    results = []
    for b in boxes:
        while (item := b.get(timeout=60))[0] != "done":
            assert item[0] == "text"
        results.append(item[1])
    assert engine.batches - before == 2 and all(r.done for r in reqs)  # the long one, then the four together
    assert [r.text for r in results] == [a.text for a in alone]
    assert [r.completion_tokens for r in results] == [a.completion_tokens for a in alone]
    assert all(r.completion_tokens <= 20 + i for i, r in enumerate(results))


def test_stop_strings_cut_the_text_and_never_show(engine: Engine) -> None:
    full = engine.generate(GenRequest(ids(engine, "What is the capital of France?"), 30, sink=None)).text
    word = full.split()[2]
    cut = engine.generate(GenRequest(ids(engine, "What is the capital of France?"), 30, sink=None, stop=(word,)))
    assert cut.finish_reason == "stop" and cut.text == full[: full.find(word)] and word not in cut.text


def test_ignore_eos_always_writes_max_tokens(engine: Engine) -> None:
    short = engine.generate(GenRequest(ids(engine, "hi"), 200, sink=None))
    forced = engine.generate(GenRequest(ids(engine, "hi"), 200, sink=None, ignore_eos=True))
    assert short.finish_reason == "stop" and short.completion_tokens < 200
    assert forced.completion_tokens == 200 and forced.finish_reason == "length"


def test_a_full_queue_is_a_503_at_once(engine: Engine) -> None:
    engine.max_queue, keep = 2, engine.max_queue
    try:
        with engine._lock:
            a = engine.submit(GenRequest(ids(engine, "hi"), 5, sink=lambda item: None))
            b = engine.submit(GenRequest(ids(engine, "hi"), 5, sink=lambda item: None))
            with pytest.raises(Unavailable):
                engine.submit(GenRequest(ids(engine, "hi"), 5, sink=lambda item: None))
        for _ in range(200):
            if a.done and b.done:
                break
            threading.Event().wait(0.05)
        engine.submit(GenRequest(ids(engine, "hi"), 2, sink=lambda item: None))  # room again once they finished
    finally:
        engine.max_queue = keep


def test_a_request_for_an_unloaded_adapter_fails_alone(engine: Engine, tmp_path: Path, tiny_chat_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_chat_dir), LoraConfig(r=4, target_modules=["q_proj"]))
    peft.save_pretrained(tmp_path / "adapter")
    engine.add_adapter("gone", tmp_path / "adapter")
    engine.add_adapter("kept", tmp_path / "adapter")
    gone, kept = queue.SimpleQueue(), queue.SimpleQueue()
    with engine._lock:
        engine.submit(GenRequest(ids(engine, "hi"), 5, sink=gone.put, adapter="gone"))
        engine.submit(GenRequest(ids(engine, "hi"), 5, sink=kept.put, adapter="kept"))
        engine.adapters.pop("gone")  # stopped while queued (remove_adapter, without waiting for the lock)
    kind, value = gone.get(timeout=60)
    assert kind == "error" and isinstance(value, Conflict)
    while (item := kept.get(timeout=60))[0] == "text":
        pass
    assert item[0] == "done"
    with pytest.raises(Conflict):
        engine.submit(GenRequest(ids(engine, "hi"), 5, sink=lambda item: None, adapter="gone"))
    engine.remove_adapter("kept")


def test_closing_fails_whoever_still_waits(tiny_chat_dir: Path, engine: Engine) -> None:
    other = Engine("other", engine.model, engine.tokenizer)
    box: queue.SimpleQueue = queue.SimpleQueue()
    with other._lock:
        for _ in range(3):
            other.submit(GenRequest(ids(engine, "hi"), 50, sink=box.put))
        other.close()
    kinds = []
    while len([k for k in kinds if k in ("done", "error")]) < 3:
        kinds.append(box.get(timeout=60)[0])
    assert "error" in kinds  # nobody hangs
    with pytest.raises(Unavailable):
        other.submit(GenRequest(ids(engine, "hi"), 5, sink=box.put))
