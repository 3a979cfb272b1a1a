"""Datasets: register (validate + normalise), stats, split, and the bundled sample.

A dataset is a folder ``$WORKBENCH_HOME/datasets/<id>/`` holding ``data.jsonl`` —
always normalised chat JSONL, whatever was uploaded — plus a record in the store's
``datasets`` table. Registration is all-or-nothing: a file with any bad record is
rejected with every error (see :mod:`workbench.dataset_validation`) and leaves
neither a record nor a folder behind.

Everything streams, so a dataset can be much larger than memory.
"""

from __future__ import annotations

import hashlib
import random
import shutil
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, get_args

from pydantic_core import from_json

from . import home
from .dataset_validation import ROLES, FormatArg, validate_file
from .errors import InvalidInput, NotFound, TooLarge
from .records import LOCAL_USER, new_id, now_iso
from .store import Store, get_store

TABLE = "datasets"
DATA_FILE = "data.jsonl"
SAMPLE_DATASET = Path(__file__).parent / "data" / "sample_support_chats.jsonl"
SAMPLE_NAME = "Customer Support Chat (sample)"
TOKENIZE_CHUNK = 256
HISTOGRAM_BINS = 10
PREVIEW_MAX_TOKENS = 131072  # the schema's max_seq_length ceiling: a preview shows the whole sample
_MB = 1024 * 1024


# --- reading normalised files ----------------------------------------------------------

def _lines(path: Path) -> Iterator[bytes]:
    with Path(path).open("rb") as fh:
        for line in fh:
            if line.strip():
                yield line


def iter_chats(path: str | Path) -> Iterator[list[dict[str, str]]]:
    """The messages of each sample of a normalised file, one sample at a time."""
    for line in _lines(Path(path)):
        yield from_json(line)["messages"]


def load_chats(path: str | Path, indices: Sequence[int] | None = None) -> list[list[dict[str, str]]]:
    """Samples in memory — all of them, or those at ``indices`` in the order given."""
    if indices is None:
        return list(iter_chats(path))
    wanted = set(indices)
    found = {i: chat for i, chat in enumerate(iter_chats(path)) if i in wanted}
    missing = wanted - found.keys()
    if missing:
        raise InvalidInput(f"sample index {min(missing)} is out of range ({len(found)} found)", field="indices")
    return [found[i] for i in indices]


# --- stats -----------------------------------------------------------------------------

def _summary(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "mean": 0.0, "p50": 0, "p95": 0, "max": 0}
    ordered = sorted(values)
    n = len(ordered)
    return {
        "min": ordered[0],
        "mean": round(sum(ordered) / n, 2),
        "p50": ordered[(n - 1) // 2],
        "p95": ordered[min(n - 1, int(0.95 * n))],
        "max": ordered[-1],
    }


def _histogram(values: Sequence[int], unit: str, bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """``bins`` equal-width bins from min to max; ``bins`` in the result holds the edges."""
    lo, hi = (min(values), max(values)) if values else (0, 0)
    width = max((hi - lo) / bins, 1e-9) if hi > lo else 1.0
    counts = [0] * bins
    for v in values:
        counts[min(int((v - lo) / width), bins - 1)] += 1
    edges = [round(lo + i * width, 2) for i in range(bins + 1)]
    return {"bins": edges, "counts": counts, "unit": unit}


def _render(tokenizer: Any, chats: list[list[dict[str, str]]]) -> list[str]:
    """Each chat as the model will see it: its chat template when it has one, else plain contents."""
    if getattr(tokenizer, "chat_template", None):
        try:
            return list(tokenizer.apply_chat_template(chats, tokenize=False))
        except Exception:  # a strict template (e.g. role alternation) rejects some chat: go one by one
            return [_render_one(tokenizer, chat) for chat in chats]
    return ["\n".join(m["content"] for m in chat) for chat in chats]


def _render_one(tokenizer: Any, chat: list[dict[str, str]]) -> str:
    try:
        return tokenizer.apply_chat_template(chat, tokenize=False)
    except Exception:
        return "\n".join(m["content"] for m in chat)


def _token_lengths(tokenizer: Any, texts: list[str]) -> list[int]:
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


class _StatsAccumulator:
    """One pass over the samples; per-sample lengths kept as compact int arrays for percentiles."""

    def __init__(self, tokenizer: Any = None):
        self.tokenizer = tokenizer
        self.roles: Counter[str] = Counter({r: 0 for r in ROLES})
        self.messages, self.turns, self.chars, self.tokens = array("l"), array("l"), array("q"), array("q")
        self.assistant_tokens = 0
        self.seen: set[bytes] = set()
        self.duplicates = 0
        self.pending: list[list[dict[str, str]]] = []

    def add(self, line: bytes) -> None:
        digest = hashlib.blake2b(line.strip(), digest_size=16).digest()
        if digest in self.seen:
            self.duplicates += 1
        self.seen.add(digest)
        chat = from_json(line)["messages"]
        self.roles.update(m["role"] for m in chat)
        self.messages.append(len(chat))
        self.turns.append(sum(m["role"] == "assistant" for m in chat))
        self.chars.append(sum(len(m["content"]) for m in chat))
        if self.tokenizer is not None:
            self.pending.append(chat)
            if len(self.pending) >= TOKENIZE_CHUNK:
                self.flush()

    def flush(self) -> None:
        """Tokenize the pending chunk in one batched call (much faster than per sample)."""
        if not self.pending:
            return
        self.tokens.extend(_token_lengths(self.tokenizer, _render(self.tokenizer, self.pending)))
        replies = [m["content"] for chat in self.pending for m in chat if m["role"] == "assistant"]
        self.assistant_tokens += sum(_token_lengths(self.tokenizer, replies))
        self.pending = []

    def result(self, size_bytes: int) -> dict[str, Any]:
        self.flush()
        turns = _summary(self.turns)
        messages = _summary(self.messages)
        tokens = None
        if self.tokenizer is not None:
            tokens = {"total": sum(self.tokens), "assistant": self.assistant_tokens, **_summary(self.tokens),
                      "tokenizer": getattr(self.tokenizer, "name_or_path", None) or type(self.tokenizer).__name__}
        return {
            "samples": len(self.chars),
            "size_mb": round(size_bytes / _MB, 2),
            "roles": dict(self.roles),
            "messages_per_sample": {k: messages[k] for k in ("min", "mean", "max")},
            "turns": {k: turns[k] for k in ("min", "mean", "max")},
            "chars": {"total": sum(self.chars), **_summary(self.chars)},
            "tokens": tokens,
            "histogram": _histogram(self.tokens, "tokens") if tokens else _histogram(self.chars, "chars"),
            "duplicates": self.duplicates,
        }


def compute_stats(path: str | Path, tokenizer: Any = None) -> dict[str, Any]:
    """Stats of a normalised file in one streamed pass.

    ``turns`` counts assistant replies per sample; ``duplicates`` counts samples that
    exactly repeat an earlier one. Token counts (with a HF tokenizer) render each chat
    with its chat template; ``tokens.assistant`` counts reply contents alone.
    """
    path = Path(path)
    acc = _StatsAccumulator(tokenizer)
    for line in _lines(path):
        acc.add(line)
    return acc.result(path.stat().st_size)


# --- splitting -------------------------------------------------------------------------

def split_indices(n: int, eval_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic shuffle split of ``range(n)``: (train, eval), each sorted.

    When ``eval_fraction > 0`` and ``n >= 2`` both sides get at least one sample.
    """
    if not 0 <= eval_fraction < 1:
        raise InvalidInput("eval_fraction must be in [0, 1)", field="eval_fraction")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_eval = round(n * eval_fraction)
    if eval_fraction > 0 and n >= 2:
        n_eval = min(max(n_eval, 1), n - 1)
    return sorted(order[n_eval:]), sorted(order[:n_eval])


def _write_subsets(src: Path, outputs: dict[Path, set[int]]) -> dict[Path, str]:
    """Copy each line of ``src`` into the output whose index set holds it; sha256 of each."""
    shas = {p: hashlib.sha256() for p in outputs}
    handles = {p: p.open("wb") for p in outputs}
    try:
        for i, line in enumerate(_lines(src)):
            line = line.rstrip(b"\r\n") + b"\n"
            for out, keep in outputs.items():
                if i in keep:
                    handles[out].write(line)
                    shas[out].update(line)
    finally:
        for fh in handles.values():
            fh.close()
    return {p: sha.hexdigest() for p, sha in shas.items()}


# --- the service ------------------------------------------------------------------------

def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("name is required", field="name")
    return name.strip()


def _check_format(fmt: str) -> FormatArg:
    if fmt not in get_args(FormatArg):
        raise InvalidInput(f"unknown format '{fmt}' (choose from {', '.join(get_args(FormatArg))})", field="format")
    return fmt  # type: ignore[return-value]


def _too_large(size: int, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise TooLarge(f"file is {size / _MB:.1f} MB; the limit is {max_bytes / _MB:.1f} MB", field="file")


class DatasetService:
    """Register, inspect, split and delete datasets; every call is scoped to an owner."""

    def __init__(self, store: Store | None = None):
        self.store = store or get_store()

    # -- registration --

    def register(self, source: str | Path | bytes, *, name: str, format: FormatArg = "auto",
                 column_mapping: dict[str, Any] | None = None, filename: str | None = None,
                 owner: str = LOCAL_USER, max_bytes: int | None = None) -> dict[str, Any]:
        """Validate and normalise ``source`` (a path, or the uploaded bytes) into a new dataset."""
        from .quotas import check_storage

        size = len(source) if isinstance(source, (bytes, bytearray)) else _size_or_zero(source)
        check_storage(self.store, owner, size)
        record = self._build(source, name=name, format=format, column_mapping=column_mapping,
                             filename=filename, owner=owner, max_bytes=max_bytes)
        try:
            with self.store.transaction() as tx:  # the version is read and taken under the store's lock
                prev = latest_version(tx.all(TABLE, owner), record["name"])
                record["version"] = (prev.get("version") or 1) + 1 if prev else 1
                record["previous_version_id"] = prev["id"] if prev else None
                return tx.insert(TABLE, record)
        except BaseException:
            shutil.rmtree(self._folder(record["id"]), ignore_errors=True)
            raise

    def versions(self, name_or_id: str, owner: str = LOCAL_USER) -> list[dict[str, Any]]:
        """Every version of a dataset's name (given the name or any version's id), oldest first."""
        rows = self.store.all(TABLE, owner)
        by_id = {r["id"]: r for r in rows}
        name = by_id[name_or_id]["name"] if name_or_id in by_id else name_or_id
        found = sorted((r for r in rows if r["name"] == name and not r.get("parent_id")),
                       key=lambda r: (r.get("version") or 1, r["created_at"]))
        if not found:
            raise NotFound(f"dataset '{name_or_id}' not found", field="id")
        return found

    def register_sample(self, owner: str = LOCAL_USER) -> dict[str, Any]:
        """The bundled sample for ``owner``, registered on first call (idempotent, race-safe)."""
        existing = self._sample_of(self.store.all(TABLE, owner))
        if existing:
            return existing
        record = self._build(SAMPLE_DATASET, name=SAMPLE_NAME, format="chat", column_mapping=None,
                             filename=SAMPLE_DATASET.name, owner=owner, max_bytes=None, is_sample=True)
        try:
            with self.store.transaction() as tx:
                existing = self._sample_of(tx.all(TABLE, owner))
                if existing is None:
                    return tx.insert(TABLE, record)
        except BaseException:
            shutil.rmtree(self._folder(record["id"]), ignore_errors=True)
            raise
        shutil.rmtree(self._folder(record["id"]), ignore_errors=True)  # another process won the race
        return existing

    @staticmethod
    def _sample_of(records: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
        return next((r for r in records if r.get("is_sample")), None)

    def _build(self, source: str | Path | bytes, *, name: str, format: str, column_mapping: dict[str, Any] | None,
               filename: str | None, owner: str, max_bytes: int | None, is_sample: bool = False) -> dict[str, Any]:
        """Validate into a fresh folder and return the (not yet stored) record; no trace on failure."""
        name, fmt = _check_name(name), _check_format(format)
        if isinstance(source, (bytes, bytearray)):
            _too_large(len(source), max_bytes)
        else:
            source = self._existing_file(source)
            _too_large(source.stat().st_size, max_bytes)
            filename = filename or source.name
        dataset_id = new_id("dataset")
        folder = self._folder(dataset_id)
        folder.mkdir(parents=True)
        try:
            upload = source if isinstance(source, Path) else self._save_upload(folder, bytes(source), filename)
            size = upload.stat().st_size
            report = validate_file(upload, fmt, column_mapping, out=folder / DATA_FILE, filename=filename or "upload")
            if upload.parent == folder:
                upload.unlink()
            return self._record(dataset_id, name, owner, folder / DATA_FILE, sha256=report.sha256 or "",
                                size_bytes=size, filename=filename, input_format=report.input_format,
                                extra={"column_mapping": column_mapping, "is_sample": is_sample})
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    @staticmethod
    def _existing_file(source: str | Path) -> Path:
        path = Path(source).expanduser()
        if not path.is_file():
            raise InvalidInput(f"no such file: {path}", field="source")
        return path

    @staticmethod
    def _save_upload(folder: Path, data: bytes, filename: str | None) -> Path:
        """Uploads go to disk first so validation streams them like any other file."""
        suffix = Path(filename).suffix.lower() if filename else ""
        path = folder / f".upload{suffix if suffix.isascii() and len(suffix) <= 8 else ''}"
        path.write_bytes(data)
        return path

    @staticmethod
    def _folder(dataset_id: str) -> Path:
        return home.datasets_dir() / dataset_id

    @staticmethod
    def _record(dataset_id: str, name: str, owner: str, data: Path, *, sha256: str, size_bytes: int,
                filename: str | None, input_format: str, extra: dict[str, Any]) -> dict[str, Any]:
        stats = compute_stats(data)
        return {
            "id": dataset_id,
            "name": name,
            "samples": stats["samples"],
            "format": "csv" if input_format == "csv" else "jsonl",
            "input_format": input_format,
            "size_mb": round(size_bytes / _MB, 2),
            "created_at": now_iso(),
            "owner": owner,
            "path": str(data),
            "sha256": sha256,
            "filename": filename,
            "stats": stats,
            "parent_id": None,
            **extra,
        }

    # -- reading --

    def list(self, owner: str = LOCAL_USER) -> list[dict[str, Any]]:
        return sorted(self.store.all(TABLE, owner), key=lambda r: r["created_at"])

    def get(self, dataset_id: str, owner: str = LOCAL_USER) -> dict[str, Any]:
        return self.store.require(TABLE, dataset_id, owner)

    def path(self, dataset_id: str, owner: str = LOCAL_USER) -> Path:
        """The normalised file, derived from the current home so a moved home still works."""
        self.get(dataset_id, owner)
        path = self._folder(dataset_id) / DATA_FILE
        if not path.is_file():
            raise NotFound(f"dataset '{dataset_id}' has no data file", field="id")
        return path

    def stats(self, dataset_id: str, owner: str = LOCAL_USER, model: str | None = None) -> dict[str, Any]:
        """Stored (character) stats, or fresh ones with token counts from ``model``'s tokenizer."""
        record = self.get(dataset_id, owner)
        if model is None:
            return record["stats"]
        from .models import (
            load_tokenizer,  # lazy: pulls in transformers and the model registry
        )

        tokenizer = load_tokenizer(model, owner=owner)
        return {**compute_stats(self.path(dataset_id, owner), tokenizer), "model": model}

    def preview(self, dataset_id: str, owner: str = LOCAL_USER, *, model: str = "tiny-chat",
                index: int = 0) -> dict[str, Any]:
        """Sample ``index`` rendered as ``model``'s tokens, each marked trained or masked (see ``token_preview``)."""
        record = self.get(dataset_id, owner)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < record["samples"]:
            raise InvalidInput(f"sample index {index} is out of range (0..{record['samples'] - 1})", field="index")
        try:
            messages = next(chat for i, chat in enumerate(iter_chats(self.path(dataset_id, owner))) if i == index)
        except StopIteration:
            raise InvalidInput(f"sample index {index} is out of range", field="index") from None
        from .chat_encoding import token_preview
        from .models import (
            load_tokenizer,  # lazy: pulls in transformers and the model registry
        )

        tokenizer = load_tokenizer(model, owner=owner)
        tokens = token_preview(tokenizer, messages, PREVIEW_MAX_TOKENS)
        return {"index": index, "samples": record["samples"], "messages": messages, "tokens": tokens,
                "trained_tokens": sum(t["trained"] for t in tokens), "total_tokens": len(tokens)}

    # -- deriving / deleting --

    def split(self, dataset_id: str, eval_fraction: float = 0.1, seed: int = 42,
              owner: str = LOCAL_USER) -> dict[str, dict[str, Any]]:
        """Two new datasets, ``<name> (train)`` and ``<name> (eval)``, with ``parent_id`` set.

        All or nothing: on any failure neither record is stored and both folders are removed.
        """
        parent = self.get(dataset_id, owner)
        if eval_fraction <= 0 or parent["samples"] < 2:
            raise InvalidInput("split needs eval_fraction > 0 and at least 2 samples", field="eval_fraction")
        train, evals = split_indices(parent["samples"], eval_fraction, seed)
        src = self.path(dataset_id, owner)
        parts = {"train": set(train), "eval": set(evals)}
        ids = {part: new_id("dataset") for part in parts}
        files = {part: self._folder(ids[part]) / DATA_FILE for part in parts}
        try:
            for f in files.values():
                f.parent.mkdir(parents=True)
            shas = _write_subsets(src, {files[p]: parts[p] for p in parts})
            records = {
                part: self._record(ids[part], f"{parent['name']} ({part})", owner, files[part],
                                   sha256=shas[files[part]], size_bytes=files[part].stat().st_size,
                                   filename=f"{part}.jsonl", input_format="chat",
                                   extra={"parent_id": dataset_id, "is_sample": False, "column_mapping": None,
                                          "split": {"part": part, "eval_fraction": eval_fraction, "seed": seed}})
                for part in parts
            }
            with self.store.transaction() as tx:  # one transaction: both records or neither
                for rec in records.values():
                    tx.insert(TABLE, rec)
            return records
        except BaseException:
            for f in files.values():
                shutil.rmtree(f.parent, ignore_errors=True)
            raise

    def delete(self, dataset_id: str, owner: str = LOCAL_USER) -> None:
        self.get(dataset_id, owner)
        self.store.delete(TABLE, dataset_id)
        shutil.rmtree(self._folder(dataset_id), ignore_errors=True)


def _size_or_zero(path: str | Path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0  # the core's own check names the missing file


def latest_version(records: Iterable[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The newest registered dataset called ``name`` (splits are children of a version, not versions)."""
    same = [r for r in records if r.get("name") == name and not r.get("parent_id") and not r.get("is_sample")]
    return max(same, key=lambda r: (r.get("version") or 1, r["created_at"]), default=None)
