"""A job's checkpoint as a merged model (full weights) or a GGUF file with an Ollama ``Modelfile``.

Both are built once per checkpoint under the job folder (``exports/``), next to the adapter
they come from, and downloaded as ZIPs; a merged deployment serves the merged folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from filelock import FileLock

from ..errors import InvalidInput
from ..jobfiles.checkpoints import find_checkpoint
from ..jobs.service import JobService
from ..records import LOCAL_USER
from ..results.downloads import file_tree, iter_zip

EXPORTS = "exports"
Quantization = Literal["f16", "q8_0"]


def _checkpoint(job_id: str, checkpoint: str | Path | None, owner: str) -> tuple[dict, Path]:
    svc = JobService()
    job = svc.get(job_id, owner)
    ckpt = checkpoint if isinstance(checkpoint, Path) else find_checkpoint(svc.job_dir(job_id, owner), checkpoint)
    return job, ckpt


def merged_folder(job_id: str, checkpoint: str | Path | None = None, owner: str = LOCAL_USER) -> Path:
    """The checkpoint merged into its base model (``exports/<checkpoint>-merged``), built once."""
    from ..models import resolve
    from .merge import merge_adapter

    job, ckpt = _checkpoint(job_id, checkpoint, owner)
    out = ckpt.parent.parent / EXPORTS / f"{ckpt.name}-merged"
    out.parent.mkdir(parents=True, exist_ok=True)
    base = Path(resolve(job["model"], owner).name_or_path)
    return merge_adapter(base, ckpt, out)


def gguf_file(job_id: str, checkpoint: str | None = None, quantization: Quantization = "q8_0",
              owner: str = LOCAL_USER) -> Path:
    """``exports/<checkpoint>-<quantization>/model-<quantization>.gguf`` plus its ``Modelfile``, built once."""
    from .gguf_export import export_gguf, write_modelfile

    if quantization not in ("f16", "q8_0"):
        raise InvalidInput("quantization: one of f16, q8_0", field="quantization")
    _, ckpt = _checkpoint(job_id, checkpoint, owner)
    merged = merged_folder(job_id, ckpt, owner)
    folder = ckpt.parent.parent / EXPORTS / f"{ckpt.name}-{quantization}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{job_id}-{ckpt.name}-{quantization}.gguf"
    with FileLock(str(folder / ".export.lock"), timeout=900):  # two downloads at once build it once
        if not path.is_file():
            try:
                export_gguf(merged, path, outtype=quantization)
            except ValueError as exc:  # an architecture or tokenizer the writer cannot map faithfully
                raise InvalidInput(f"checkpoint: cannot export to GGUF: {exc}", field="checkpoint") from None
        if not (folder / "Modelfile").is_file():
            write_modelfile(path)
    return path


def merged_zip(job_id: str, checkpoint: str | None = None, owner: str = LOCAL_USER) -> tuple[str, Iterator[bytes]]:
    folder = merged_folder(job_id, checkpoint, owner)
    return f"{job_id}_{folder.name}.zip", iter_zip(file_tree(folder))


def gguf_zip(job_id: str, checkpoint: str | None = None, quantization: Quantization = "q8_0",
             owner: str = LOCAL_USER) -> tuple[str, Iterator[bytes]]:
    path = gguf_file(job_id, checkpoint, quantization, owner)
    files = [(path.name, path), ("Modelfile", path.parent / "Modelfile")]
    return f"{path.stem}.zip", iter_zip(files)
