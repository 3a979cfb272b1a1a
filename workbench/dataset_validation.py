"""Streaming validation and normalisation of uploaded datasets.

Uploads can be far larger than memory, so every reader here walks the file one line
(or CSV row) at a time and never holds more than one record. Each JSONL line is parsed
and checked in a single Rust call (``TypeAdapter.validate_json``), which is several
times faster than ``json.loads`` followed by a pydantic model.

Every accepted record is rewritten as one normalised chat line,
``{"messages":[{"role":…,"content":…},…]}``, the only shape the rest of the
workbench reads. Bad records are collected — all of them, up to a cap — so the user
can fix a file in one go; :func:`validate_file` then raises
:class:`~workbench.errors.ValidationFailed` with ``details={"errors": [...],
"total_errors": N}``. Each error is ``{"line": n, "field": "messages[2].role",
"message": "..."}``; ``line`` is 1-based, and 0 means the file as a whole.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import from_json, to_json
from typing_extensions import NotRequired, TypedDict

from .errors import InvalidInput, ValidationFailed

ERROR_CAP = 100
ROLES = ("system", "user", "assistant", "tool")
InputFormat = Literal["chat", "prompt_completion", "csv"]
FormatArg = Literal["auto", "chat", "prompt_completion", "csv"]

StrictStr = Annotated[str, Strict()]
_BOM = b"\xef\xbb\xbf"
_CSV_FIELD_LIMIT = 32 << 20


# --- schemas (TypedDicts: validated in Rust, no Python object per field) -------------

class Message(TypedDict):
    role: Literal["system", "user", "assistant", "tool"]
    content: StrictStr


class ChatLine(TypedDict):
    messages: Annotated[list[Message], Field(min_length=1)]


class PromptCompletionLine(TypedDict):
    prompt: StrictStr
    completion: StrictStr
    system: NotRequired[StrictStr]


CHAT = TypeAdapter(ChatLine)
PROMPT_COMPLETION = TypeAdapter(PromptCompletionLine)
MESSAGES = TypeAdapter(Annotated[list[Message], Field(min_length=1)])


class ColumnMapping(BaseModel):
    """Which CSV columns hold what: either ``messages`` (a JSON list) or prompt + completion."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = None
    completion: str | None = None
    system: str | None = None
    messages: str | None = None

    @model_validator(mode="after")
    def _one_layout(self) -> "ColumnMapping":
        if self.messages is None and (self.prompt is None or self.completion is None):
            raise ValueError("map either 'messages', or both 'prompt' and 'completion'")
        if self.messages is not None and (self.prompt or self.completion):
            raise ValueError("map either 'messages' or 'prompt'/'completion', not both")
        return self

    def columns(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


def parse_column_mapping(mapping: dict[str, Any] | None) -> ColumnMapping | None:
    """Validate a user-supplied mapping at the boundary, naming the bad key."""
    if mapping is None:
        return None
    try:
        return ColumnMapping.model_validate(mapping)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        field_name = f"column_mapping.{where}" if where else "column_mapping"
        raise InvalidInput(f"invalid column mapping: {err['msg']}", field=field_name) from None


# --- error collection ----------------------------------------------------------------

@dataclass
class ErrorCollector:
    """Keeps the first ``cap`` errors and counts them all, so huge bad files stay cheap."""

    cap: int = ERROR_CAP
    errors: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0

    def add(self, line: int, field_name: str, message: str) -> None:
        self.total += 1
        if len(self.errors) < self.cap:
            self.errors.append({"line": line, "field": field_name, "message": message})

    def add_pydantic(self, line: int, exc: ValidationError, prefix: str = "") -> None:
        for err in exc.errors(include_url=False):
            self.add(line, _field_path(err["loc"], prefix), _describe(err))

    def raise_if_any(self, what: str) -> None:
        if not self.total:
            return
        first = self.errors[0]
        where = f"line {first['line']}, {first['field']}" if first["line"] else first["field"]
        raise ValidationFailed(
            f"{what} has {self.total} error(s); first: {where}: {first['message']}",
            field="file",
            details={"errors": self.errors, "total_errors": self.total},
        )


def _field_path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """``('messages', 2, 'role')`` → ``messages[2].role``; the whole line is ``json``."""
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "json"


def _describe(err: Any) -> str:
    """pydantic's message, plus the offending value when it is short and scalar."""
    msg = err["msg"]
    value = err.get("input")
    if err["type"] in ("missing", "json_invalid") or not (value is None or isinstance(value, (str, int, float, bool))):
        return msg
    shown = repr(value)
    return f"{msg} (got {shown[:40] + '…' if len(shown) > 40 else shown})"


def _needs_assistant(messages: list[Message]) -> bool:
    """True when no assistant message has content — such a sample teaches nothing."""
    return not any(m["role"] == "assistant" and m["content"].strip() for m in messages)


_NO_ASSISTANT = "needs at least one assistant message with non-empty content"


# --- per-format readers: yield normalised chat dicts, report errors ----------------

def _jsonl_lines(fh: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines with their 1-based numbers (a UTF-8 BOM on line 1 is dropped)."""
    for number, line in enumerate(fh, 1):
        if number == 1 and line.startswith(_BOM):
            line = line[len(_BOM):]
        if line.strip():
            yield number, line


def read_chat(fh: BinaryIO, errors: ErrorCollector) -> Iterator[ChatLine]:
    for number, line in _jsonl_lines(fh):
        try:
            record = CHAT.validate_json(line)
        except ValidationError as exc:
            errors.add_pydantic(number, exc)
            continue
        if _needs_assistant(record["messages"]):
            errors.add(number, "messages", _NO_ASSISTANT)
            continue
        yield record


def _pc_to_chat(prompt: str, completion: str, system: str | None) -> ChatLine:
    messages: list[Message] = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
    return {"messages": messages}


def read_prompt_completion(fh: BinaryIO, errors: ErrorCollector) -> Iterator[ChatLine]:
    for number, line in _jsonl_lines(fh):
        try:
            rec = PROMPT_COMPLETION.validate_json(line)
        except ValidationError as exc:
            errors.add_pydantic(number, exc)
            continue
        if not rec["completion"].strip():
            errors.add(number, "completion", "must not be empty")
            continue
        yield _pc_to_chat(rec["prompt"], rec["completion"], rec.get("system"))


def _csv_mapping(header: list[str], mapping: ColumnMapping | None, errors: ErrorCollector) -> dict[str, int] | None:
    """Column indexes for each role of the mapping, or None (with errors) if a column is missing."""
    if mapping is None:
        layout = {"messages": "messages"} if "messages" in header else {"prompt": "prompt", "completion": "completion"}
        if "system" in header and "messages" not in layout:
            layout["system"] = "system"
    else:
        layout = mapping.columns()
    missing = [(key, col) for key, col in layout.items() if col not in header]
    for key, col in missing:
        errors.add(1, f"column_mapping.{key}", f"column '{col}' not in header {header}")
    return None if missing else {key: header.index(col) for key, col in layout.items()}


def _csv_row_to_chat(row: list[str], cols: dict[str, int], line: int, errors: ErrorCollector) -> ChatLine | None:
    if "messages" in cols:
        try:
            messages = MESSAGES.validate_json(row[cols["messages"]])
        except ValidationError as exc:
            errors.add_pydantic(line, exc, prefix="messages")
            return None
        if _needs_assistant(messages):
            errors.add(line, "messages", _NO_ASSISTANT)
            return None
        return {"messages": messages}
    completion = row[cols["completion"]]
    if not completion.strip():
        errors.add(line, "completion", "must not be empty")
        return None
    system = row[cols["system"]] if "system" in cols else None
    return _pc_to_chat(row[cols["prompt"]], completion, system)


def read_csv(path: Path, errors: ErrorCollector, mapping: ColumnMapping | None = None) -> Iterator[ChatLine]:
    """Stream CSV rows; ``line`` in errors is the physical line where the record starts."""
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
            if header is None:
                return
            cols = _csv_mapping([h.strip() for h in header], mapping, errors)
            if cols is None:
                return
            while True:
                start = reader.line_num + 1
                row = next(reader, None)
                if row is None:
                    return
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    errors.add(start, "row", f"expected {len(header)} columns, got {len(row)}")
                    continue
                chat = _csv_row_to_chat(row, cols, start, errors)
                if chat is not None:
                    yield chat
        except csv.Error as exc:
            errors.add(reader.line_num + 1, "csv", f"unreadable CSV, stopped reading here: {exc}")
        except UnicodeDecodeError:  # decoding runs ahead in chunks, so no reliable line number
            errors.add(0, "encoding", "the file is not UTF-8 text; save it as UTF-8 and upload again")


# --- format detection ------------------------------------------------------------------

def _first_line(path: Path) -> bytes | None:
    with path.open("rb") as fh:
        for _, line in _jsonl_lines(fh):
            return line
    return None


def detect_format(path: Path, filename: str | None = None) -> InputFormat:
    """Pick a reader from the extension, else from the first non-blank line."""
    suffix = Path(filename or path.name).suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    first = _first_line(path)
    if first is None or not first.lstrip().startswith(b"{"):
        return "chat" if suffix in (".jsonl", ".json", ".ndjson") or first is None else "csv"
    try:
        obj = from_json(first)
    except ValueError:
        return "chat"
    if isinstance(obj, dict) and "messages" not in obj and ("prompt" in obj or "completion" in obj):
        return "prompt_completion"
    return "chat"


# --- the entry point -------------------------------------------------------------------

@dataclass(frozen=True)
class ValidationReport:
    samples: int
    input_format: InputFormat
    sha256: str | None  # of the normalised output, when one was written


def iter_normalised(path: Path, input_format: InputFormat, errors: ErrorCollector,
                    mapping: ColumnMapping | None = None) -> Iterator[ChatLine]:
    """Every valid record of ``path`` as a chat dict; bad ones land in ``errors``."""
    if input_format == "csv":
        yield from read_csv(path, errors, mapping)
        return
    reader = read_chat if input_format == "chat" else read_prompt_completion
    with path.open("rb") as fh:
        yield from reader(fh, errors)


def validate_file(path: str | Path, input_format: FormatArg = "auto", column_mapping: dict[str, Any] | None = None,
                  *, out: str | Path | None = None, filename: str | None = None,
                  cap: int = ERROR_CAP) -> ValidationReport:
    """Validate ``path`` in one streaming pass, optionally writing normalised chat JSONL to ``out``.

    Raises ValidationFailed listing every bad record (up to ``cap``); ``out`` is then removed.
    """
    path = Path(path)
    fmt: InputFormat = detect_format(path, filename) if input_format == "auto" else input_format
    mapping = parse_column_mapping(column_mapping)
    if mapping is not None and fmt != "csv":
        raise InvalidInput("column_mapping only applies to CSV files", field="column_mapping")
    errors = ErrorCollector(cap=cap)
    records = iter_normalised(path, fmt, errors, mapping)
    try:
        samples, digest = _consume(records, errors, Path(out) if out else None)
        if not samples and not errors.total:
            errors.add(0, "file", "no samples: the file is empty" + (" or has only a header" if fmt == "csv" else ""))
        errors.raise_if_any(filename or path.name)
    except BaseException:
        if out:
            Path(out).unlink(missing_ok=True)
        raise
    return ValidationReport(samples=samples, input_format=fmt, sha256=digest)


def _consume(records: Iterator[ChatLine], errors: ErrorCollector, out: Path | None) -> tuple[int, str | None]:
    """Count (and write + hash) good records; writing stops at the first error since it's moot."""
    samples = 0
    if out is None:
        for _ in records:
            samples += 1
        return samples, None
    sha = hashlib.sha256()
    with out.open("wb") as fh:
        for record in records:
            samples += 1
            if errors.total:
                continue
            line = to_json(record) + b"\n"  # records are plain validated dicts: no schema needed
            sha.update(line)
            fh.write(line)
    return samples, sha.hexdigest()
