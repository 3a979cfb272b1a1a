"""ZIP downloads of a job's model files and logs, streamed with no temporary copy.

:func:`iter_zip` runs :class:`zipfile.ZipFile` over a write-only, non-seekable sink.
``zipfile`` then writes every entry with a data descriptor (CRC and sizes after the
data) instead of seeking back to patch the local header, so the archive can be handed
out while it is being made: after each write the sink is drained into fixed-size
chunks. Memory stays at about two chunks whatever the size of the files, and the first
bytes leave before the last file has been read.

Entries are added from a path (read in chunks), from ``bytes``, or from an iterable of
``bytes`` (``progress.json`` is built that way, line by line from ``metrics.jsonl``).
Text is deflated; weights (``.safetensors``, ``.bin``, ``.pt`` …) are stored as they
are — they are already dense and deflating them costs CPU for almost nothing.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Union

from ..errors import NotFound
from ..jobfiles import job_folder
from ..records import LOCAL_USER

CHUNK_SIZE = 1 << 16
STORED_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".npy", ".npz", ".zip", ".gz"}

Source = Union[Path, bytes, Iterable[bytes]]


class _Sink:
    """Write-only and unseekable on purpose: it has ``tell`` but no ``seek``."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0

    def write(self, data: bytes) -> int:
        self.buf += data
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass

    def take(self, chunk_size: int, final: bool = False) -> Iterator[bytes]:
        """Whole chunks of what was written so far (and the rest when ``final``)."""
        start = 0
        while len(self.buf) - start >= chunk_size:
            yield bytes(self.buf[start:start + chunk_size])
            start += chunk_size
        if final and start < len(self.buf):
            yield bytes(self.buf[start:])
            start = len(self.buf)
        del self.buf[:start]


def _compression(arcname: str) -> int:
    return zipfile.ZIP_STORED if Path(arcname).suffix.lower() in STORED_SUFFIXES else zipfile.ZIP_DEFLATED


def _info(arcname: str, source: Source) -> tuple[zipfile.ZipInfo, bool]:
    """The entry's header and whether it must be zip64 (unknown size: an iterable source)."""
    if isinstance(source, Path):
        info = zipfile.ZipInfo.from_file(source, arcname)  # mtime, mode and size from the file
        unknown = False
    else:
        info = zipfile.ZipInfo(arcname, time.localtime()[:6])
        info.external_attr = 0o644 << 16
        if isinstance(source, (bytes, bytearray, memoryview)):
            info.file_size = len(source)
            unknown = False
        else:
            unknown = True
    info.compress_type = _compression(arcname)
    return info, unknown


def _pieces(source: Source, chunk_size: int) -> Iterator[bytes]:
    if isinstance(source, Path):
        with open(source, "rb") as fh:
            while piece := fh.read(chunk_size):
                yield piece
    elif isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source)
        for i in range(0, len(view), chunk_size):
            yield bytes(view[i:i + chunk_size])
    else:
        yield from source


def iter_zip(files: Iterable[tuple[str, Source]], chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """A ZIP archive of ``(arcname, source)`` entries as chunks of exactly ``chunk_size`` bytes
    (the last one shorter). Sources are read lazily, one piece at a time."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compresslevel=6, strict_timestamps=False) as zf:  # type: ignore[arg-type]
        for arcname, source in files:
            info, unknown_size = _info(arcname, source)
            with zf.open(info, "w", force_zip64=unknown_size) as entry:
                for piece in _pieces(source, chunk_size):
                    entry.write(piece)
                    yield from sink.take(chunk_size)
            yield from sink.take(chunk_size)
    yield from sink.take(chunk_size, final=True)


# --- what the downloads contain ---------------------------------------------------------------

def _short_id(job_id: str) -> str:
    return job_id[len("job-"):] if job_id.startswith("job-") else job_id


def file_tree(root: Path, prefix: str = "") -> list[tuple[str, Path]]:
    """Regular files under ``root`` (sorted; symlinks are not followed), with archive names."""
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        out.append((prefix + path.relative_to(root).as_posix(), path))
    return out


def model_zip(job_id: str, checkpoint: str | None = None, owner: str = LOCAL_USER) -> tuple[str, Iterator[bytes]]:
    """``(filename, chunks)`` of one checkpoint (``checkpoint-N``, ``final``, ``latest``), its files
    at the top of the archive, or of the whole ``output/`` folder when ``checkpoint`` is None.

    Raises InvalidInput for a name that is not a plain folder name (``../x``, ``a/b``),
    NotFound for an unknown job, checkpoint, or a job with no output yet.
    """
    from ..jobfiles.checkpoints import find_checkpoint
    from ..jobs.service import JobService

    jd = JobService().job_dir(job_id, owner)
    if checkpoint is None:
        out = job_folder(jd).output
        files = file_tree(out) if out.is_dir() else []
        if not files:
            raise NotFound(f"job '{job_id}' has no output yet", field="checkpoint")
        return f"job_{_short_id(job_id)}_output.zip", iter_zip(files)
    folder = find_checkpoint(jd, checkpoint)
    files = file_tree(folder)
    if not files:
        raise NotFound(f"checkpoint '{folder.name}' is empty", field="checkpoint")
    return f"job_{_short_id(job_id)}_{folder.name}.zip", iter_zip(files)


def progress_json(metrics_path: Path) -> Iterator[bytes]:
    """``metrics.jsonl`` as one JSON array, a line at a time (a half-written last line is skipped)."""
    import orjson

    yield b"["
    first = True
    try:
        fh = open(metrics_path, "rb")
    except FileNotFoundError:
        fh = None
    if fh is not None:
        with fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                yield line if first else b",\n" + line
                first = False
    yield b"]\n"


def logs_zip(job_id: str, owner: str = LOCAL_USER) -> tuple[str, Iterator[bytes]]:
    """``(filename, chunks)``: ``training.log`` (empty when the job has not logged yet) and
    ``progress.json``, the metrics history as a JSON array of events."""
    from ..jobs.service import JobService

    jd = JobService().job_dir(job_id, owner)
    log = job_folder(jd).log
    files: list[tuple[str, Source]] = [
        ("training.log", log if log.is_file() else b""),
        ("progress.json", progress_json(job_folder(jd).events)),
    ]
    return f"job_{_short_id(job_id)}_logs.zip", iter_zip(files)


__all__ = ["iter_zip", "model_zip", "logs_zip", "progress_json", "CHUNK_SIZE"]


def download_path(job_id: str, user: str, kind: str = "model", checkpoint: str | None = None) -> str:
    """The signed server path of a job's model or logs ZIP (see :mod:`workbench.signing`)."""
    from urllib.parse import quote

    from ..signing import sign

    params = {"checkpoint": checkpoint} if kind == "model" and checkpoint else None
    return sign(f"/api/training/{quote(job_id, safe='')}/download/{kind}", user, params)
