"""The local inference engine: one loaded base model, its LoRA adapters, batched generation.

One :class:`Engine` per base model folder holds the weights once; every adapter deployed over
that base is loaded into the same ``PeftModel`` (``load_adapter``), so a new deployment costs an
adapter's load, not a model's. Requests queue on the engine and one generation thread per
engine takes them in batches: everything waiting when a batch starts (up to ``max_batch``) that
samples the same way is generated together, mixed adapters included (peft's ``adapter_names``),
with left padding, a per-row token budget and per-row stop strings. The HTTP event loop never
runs a forward pass; it only reads what the thread hands to each request's ``sink``.

Torch, transformers and peft are imported on first use only, so the server starts light.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import settings as core_settings
from ..errors import Conflict, Unavailable

log = logging.getLogger("workbench.serving")

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch
Sink = Callable[[tuple[str, Any]], None]


@dataclass
class Generation:
    """What one request got: the text, token counts, why it ended, and its timings (seconds)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length"
    ttft_s: float | None
    latency_s: float


@dataclass
class GenRequest:
    """One prompt to complete. ``sink`` receives ``("text", piece)`` as text is final,
    then ``("done", Generation)`` or ``("error", exception)``, from the engine's thread."""

    prompt_ids: list[int]
    max_tokens: int
    sink: Sink
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    adapter: str | None = None
    ignore_eos: bool = False  # vLLM's benchmarking switch: always generate ``max_tokens``
    submitted: float = field(default_factory=time.perf_counter)
    # filled in while generating
    ids: list[int] = field(default_factory=list)
    sent: str = ""  # text handed to the sink so far
    text: str = ""  # decoded text so far (incrementally: prefix/read offsets, as vLLM and TGI do)
    prefix_offset: int = 0
    read_offset: int = 0
    done: bool = False
    released: bool = False  # its place in the queue's bound was given back
    finish_reason: str = "length"
    first_token_at: float | None = None

    @property
    def sampling(self) -> tuple[float, float]:
        """Requests that sample the same way can share one ``generate`` call."""
        return (0.0, 1.0) if self.temperature <= 0 else (self.temperature, self.top_p)


class Engine:
    """A base model in memory, its adapters, and the thread that generates for them."""

    def __init__(self, key: str, model: Any, tokenizer: Any, *, max_batch: int | None = None,
                 max_queue: int | None = None):
        env = core_settings.current()
        self.key = key
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch or env.max_batch
        self.max_queue = max_queue or env.generation_queue
        self.adapters: dict[str, str] = {}
        self.batches = 0  # generate() calls made; the batching test and the bench read it
        self.closed = False
        self._queue: queue.Queue[GenRequest | None] = queue.Queue()
        self._lock = threading.Lock()  # adapters change only between batches
        self._pending = 0  # submitted and not finished: what WORKBENCH_GENERATION_QUEUE bounds
        self._pending_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=f"wb-generate-{Path(key).name}", daemon=True)
        self._thread.start()

    # ---- adapters ----------------------------------------------------------------------------
    def add_adapter(self, name: str, path: str | Path) -> float:
        """Load a LoRA adapter under ``name`` (no-op when it is there); the seconds it took."""
        if name in self.adapters:  # the common case, every request: no lock, never waits for a batch
            return 0.0
        t0 = time.perf_counter()
        with self._lock:
            if name in self.adapters:
                return 0.0
            from peft import PeftModel

            if not isinstance(self.model, PeftModel):
                self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name)
            else:
                self.model.load_adapter(str(path), adapter_name=name)
            self.model.eval()
            self.adapters[name] = str(path)
        took = time.perf_counter() - t0
        log.info("adapter %s loaded over %s in %.2f s", name, self.key, took)
        return took

    def remove_adapter(self, name: str) -> None:
        with self._lock:
            if self.adapters.pop(name, None) is not None:
                try:
                    self.model.delete_adapter(name)
                except (AttributeError, ValueError) as exc:  # the last one: peft keeps it; harmless
                    log.debug("adapter %s kept loaded: %s", name, exc)

    # ---- requests ----------------------------------------------------------------------------
    def submit(self, req: GenRequest) -> GenRequest:
        """Queue a request; a full queue is a 503 at once rather than an unbounded wait."""
        if self.closed:
            raise Unavailable("the model was unloaded; retry", field="model")
        if req.adapter is not None and req.adapter not in self.adapters:
            raise Conflict("this deployment is stopped (its adapter is unloaded)", field="model")
        with self._pending_lock:
            if self._pending >= self.max_queue:
                raise Unavailable(f"the model is busy: {self.max_queue} requests are waiting "
                                  "(WORKBENCH_GENERATION_QUEUE); retry shortly")
            self._pending += 1
        sink = req.sink

        def counted(item: tuple[str, Any]) -> None:
            if item[0] in ("done", "error"):
                self._release(req)
            try:
                sink(item)
            except Exception:  # a listener gone (a closed event loop) never takes the thread down
                log.debug("a request's listener failed", exc_info=True)

        req.sink = counted
        self._queue.put(req)
        return req

    def cancel(self, req: GenRequest) -> None:
        """The caller left: the row stops at the next step (or never starts), and frees its place."""
        req.done = True
        self._release(req)

    def _release(self, req: GenRequest) -> None:
        with self._pending_lock:
            if not req.released:
                req.released = True
                self._pending -= 1

    def generate(self, req: GenRequest, timeout: float | None = None) -> Generation:
        """Blocking: submit and wait for the result (the RunPod worker and the bench use it)."""
        box: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        req.sink = box.put
        self.submit(req)
        while True:
            kind, value = box.get(timeout=timeout)
            if kind == "done":
                return value
            if kind == "error":
                raise value

    def close(self) -> None:
        """Stop the thread; requests still waiting fail with a 503 rather than hang."""
        self.closed = True
        self._queue.put(None)

    # ---- the generation thread ---------------------------------------------------------------
    def _loop(self) -> None:
        waiting: list[GenRequest] = []
        while True:
            if not waiting:
                item = self._queue.get()
                if item is None:
                    return self._fail_waiting(waiting)
                waiting.append(item)
            while True:  # everything queued by now joins this round
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    return self._fail_waiting(waiting)
                waiting.append(item)
            waiting = [r for r in waiting if not r.done]  # a client that left before its turn
            if not waiting:
                continue
            key = waiting[0].sampling
            batch = [r for r in waiting if r.sampling == key][: self.max_batch]
            waiting = [r for r in waiting if r not in batch]
            try:
                with self._lock:
                    gone = [r for r in batch if r.adapter is not None and r.adapter not in self.adapters]
                    for r in gone:  # stopped since it was queued: it fails alone, never its batch
                        r.done = True
                        r.sink(("error", Conflict("this deployment was stopped", field="model")))
                    batch = [r for r in batch if r not in gone]
                    if batch:
                        self._run(batch)
            except Exception as exc:  # a bad batch fails its requests, never the thread
                log.exception("generation failed")
                for r in batch:
                    if not r.done:
                        r.done = True
                        r.sink(("error", exc))

    def _fail_waiting(self, waiting: list[GenRequest]) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                waiting.append(item)
        for r in waiting:
            if not r.done:
                r.done = True
                r.sink(("error", Unavailable("the model was unloaded; retry", field="model")))

    def _run(self, batch: list[GenRequest]) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        eos = _eos_ids(self.model, tok)
        width = max(len(r.prompt_ids) for r in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, r in enumerate(batch):  # left padding: every row's next token is at the same position
            ids[i, width - len(r.prompt_ids):] = torch.tensor(r.prompt_ids, dtype=torch.long)
            mask[i, width - len(r.prompt_ids):] = 1
        engine = self

        class Rows(StoppingCriteria):
            """Per-row stop: its own token budget, an end token, or one of its stop strings."""

            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.tensor([r.done for r in batch], dtype=torch.bool, device=input_ids.device)

        class Streamer:
            """Receives each step's tokens (one per row) and hands every row its new text."""

            prompt_seen = False

            def put(self, value: Any) -> None:
                if not self.prompt_seen:  # generate() first passes the prompt itself
                    self.prompt_seen = True
                    return
                now = time.perf_counter()
                for r, t in zip(batch, value.reshape(-1).tolist(), strict=True):
                    if r.done:
                        continue
                    if t in eos and not r.ignore_eos:
                        engine._finish(r, "stop")
                        continue
                    r.ids.append(t)
                    if r.first_token_at is None:
                        r.first_token_at = now
                    engine._emit(r)
                    if not r.done and len(r.ids) >= r.max_tokens:
                        engine._finish(r, "length")

            def end(self) -> None:
                for r in batch:
                    if not r.done:
                        engine._finish(r, "length")

        temp, top_p = batch[0].sampling
        kwargs: dict[str, Any] = {"do_sample": temp > 0}
        if temp > 0:
            kwargs.update(temperature=temp, top_p=top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        names = {r.adapter for r in batch}
        context: Any = contextlib.nullcontext()
        if self.adapters and len(names) > 1:  # mixed adapters in one batch: peft routes each row
            kwargs["adapter_names"] = [r.adapter or BASE for r in batch]
        elif self.adapters and names == {None}:
            context = self.model.disable_adapter()  # the base alone
        elif self.adapters:
            self.model.set_adapter(next(iter(names)))  # one adapter: peft's fast path (under the lock)
        self.batches += 1
        device = getattr(self.model, "device", None) or torch.device("cpu")
        ids, mask = ids.to(device), mask.to(device)
        with torch.inference_mode(), context:
            # eos is each row's own stop (Rows/Streamer), so generate() itself never ends a row on it
            self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max(r.max_tokens for r in batch),
                                pad_token_id=pad, eos_token_id=None, streamer=Streamer(),
                                stopping_criteria=StoppingCriteriaList([Rows()]), **kwargs)

    def _emit(self, r: GenRequest) -> None:
        """Decode the row's new token incrementally and send the text that is final: whole
        characters, cut at a stop string, holding back what could still become one."""
        tok = self.tokenizer
        prefix = tok.decode(r.ids[r.prefix_offset:r.read_offset], skip_special_tokens=True)
        new = tok.decode(r.ids[r.prefix_offset:], skip_special_tokens=True)
        if len(new) <= len(prefix) or new.endswith("\ufffd"):  # a multi-byte character still being built
            return
        r.text += new[len(prefix):]
        r.prefix_offset, r.read_offset = r.read_offset, len(r.ids)
        for s in r.stop:
            at = r.text.find(s, max(0, len(r.sent) - len(s)))
            if at >= 0:
                self._finish(r, "stop", r.text[:at])
                return
        hold = max((len(s) - 1 for s in r.stop), default=0)
        self._send(r, r.text[: len(r.text) - hold] if hold else r.text)

    def _send(self, r: GenRequest, text: str) -> None:
        if len(text) > len(r.sent):
            r.sink(("text", text[len(r.sent):]))
            r.sent = text

    def _finish(self, r: GenRequest, reason: str, text: str | None = None) -> None:
        """End a row: what a partial-stop hold kept back is final now (``text``: cut at a stop string)."""
        if r.done:
            return
        if text is None:
            tail = self.tokenizer.decode(r.ids[r.prefix_offset:], skip_special_tokens=True).rstrip("\ufffd")
            prefix = self.tokenizer.decode(r.ids[r.prefix_offset:r.read_offset], skip_special_tokens=True)
            text = r.text + tail[len(prefix):]
        self._send(r, text)
        r.done = True
        r.finish_reason = reason
        r.sink(("done", Generation(
            text=r.sent, prompt_tokens=len(r.prompt_ids), completion_tokens=len(r.ids), finish_reason=reason,
            ttft_s=(r.first_token_at - r.submitted) if r.first_token_at is not None else None,
            latency_s=time.perf_counter() - r.submitted)))


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    gen = getattr(model, "generation_config", None)
    raw = getattr(gen, "eos_token_id", None) if gen is not None else None
    for v in (raw if isinstance(raw, list) else [raw]):
        if v is not None:
            ids.add(int(v))
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    for special in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
        tid = tokenizer.convert_tokens_to_ids(special) if special in tokenizer.get_vocab() else None
        if tid is not None:
            ids.add(int(tid))
    return ids


# --- the engines of this process ----------------------------------------------------------------

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def engine_for(key: str, load: Callable[[], tuple[Any, Any]]) -> Engine:
    """The engine for a base model folder (``key``), loading it once per process with ``load()``."""
    with _engines_lock:
        found = _engines.get(key)
        if found is not None:
            return found
    model, tokenizer = load()  # outside the lock: another base may load meanwhile
    with _engines_lock:
        found = _engines.get(key)
        if found is None:
            model.eval()
            found = _engines[key] = Engine(key, model, tokenizer)
        return found


def loaded() -> dict[str, Engine]:
    with _engines_lock:
        return dict(_engines)


def unload(key: str) -> bool:
    """Free a base model nobody serves any more (its weights, its thread)."""
    with _engines_lock:
        engine = _engines.pop(key, None)
    if engine is None:
        return False
    engine.close()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass
    return True


def unload_all() -> None:
    with _engines_lock:
        for e in _engines.values():
            e.close()
        _engines.clear()
