"""ZIP downloads: streamed with no temporary copy, byte-identical to the files on disk."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from workbench import home
from workbench.errors import InvalidInput, NotFound
from workbench.jobs.service import JobService
from workbench.results.downloads import iter_zip, logs_zip, model_zip, progress_json

CHUNK = 1 << 16


def unzip(chunks) -> zipfile.ZipFile:
    zf = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert zf.testzip() is None  # every CRC checks out
    return zf


def short(job_id: str) -> str:
    return job_id.removeprefix("job-")


# --- iter_zip ---------------------------------------------------------------------------------

def test_iter_zip_streams_paths_bytes_and_iterables_into_a_valid_identical_archive(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(os.urandom(3 * 2**20 + 123))  # incompressible, several chunks
    text = tmp_path / "config.json"
    text.write_text(json.dumps({"hidden_size": 128}, indent=1) * 200)
    entries = [("model.safetensors", weights), ("sub/config.json", text), ("notes.txt", b"hello\n"),
               ("lines.json", iter([b"[", b"1,", b"2", b"]"])), ("empty.log", b"")]

    chunks = list(iter_zip(entries, chunk_size=CHUNK))

    assert len(chunks) > 1
    assert all(len(c) == CHUNK for c in chunks[:-1]) and 0 < len(chunks[-1]) <= CHUNK
    zf = unzip(chunks)
    assert zf.namelist() == ["model.safetensors", "sub/config.json", "notes.txt", "lines.json", "empty.log"]
    assert zf.read("model.safetensors") == weights.read_bytes()
    assert zf.read("sub/config.json") == text.read_bytes()
    assert zf.read("notes.txt") == b"hello\n" and zf.read("lines.json") == b"[1,2]" and zf.read("empty.log") == b""
    # dense weights are stored as they are, text is deflated
    assert zf.getinfo("model.safetensors").compress_type == zipfile.ZIP_STORED
    assert zf.getinfo("sub/config.json").compress_type == zipfile.ZIP_DEFLATED
    assert zf.getinfo("sub/config.json").compress_size < text.stat().st_size


@pytest.mark.skipif(shutil.which("unzip") is None, reason="no unzip binary")
def test_the_streamed_archive_is_readable_by_unzip(tmp_path: Path) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(os.urandom(200_000))
    archive = tmp_path / "out.zip"
    archive.write_bytes(b"".join(iter_zip([("a.bin", src), ("b.txt", b"x" * 10_000),
                                           ("c.json", iter([b"{}"]))])))
    check = subprocess.run(["unzip", "-t", str(archive)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_iter_zip_is_lazy_and_holds_about_two_chunks_in_memory(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(8 * 2**20))
    opened: list[str] = []

    def late_source():
        opened.append("late")
        yield b"tail"

    stream = iter_zip([("big.bin", big), ("late.txt", late_source())], chunk_size=CHUNK)
    first = next(stream)
    assert len(first) == CHUNK and opened == []  # bytes leave before later sources are even read

    tracemalloc.start()
    try:
        total = len(first) + sum(len(c) for c in stream)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert opened == ["late"]
    assert total > 8 * 2**20
    assert peak < 8 * CHUNK  # never the whole archive (8 MB) in memory


def test_iter_zip_of_nothing_is_an_empty_archive() -> None:
    assert unzip(iter_zip([])).namelist() == []


# --- model downloads --------------------------------------------------------------------------

def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_checkpoint_downloads_as_its_files_at_the_top_of_the_archive(lora_job) -> None:
    name, chunks = model_zip(lora_job["id"], "checkpoint-10")

    assert name == f"job_{short(lora_job['id'])}_checkpoint-10.zip"
    zf = unzip(chunks)
    on_disk = files_under(home.job_dir(lora_job["id"]) / "output" / "checkpoint-10")
    assert "adapter_config.json" in on_disk and "trainer_state.json" in on_disk
    assert {n: zf.read(n) for n in zf.namelist()} == on_disk
    assert zf.getinfo("adapter_model.safetensors").compress_type == zipfile.ZIP_STORED


def test_final_and_latest_name_the_final_model(lora_job) -> None:
    for ref in ("final", "latest"):
        name, chunks = model_zip(lora_job["id"], ref)
        assert name == f"job_{short(lora_job['id'])}_final.zip"
        assert "adapter_model.safetensors" in unzip(chunks).namelist()


def test_no_checkpoint_downloads_the_whole_output_folder(lora_job) -> None:
    name, chunks = model_zip(lora_job["id"], None)

    assert name == f"job_{short(lora_job['id'])}_output.zip"
    zf = unzip(chunks)
    on_disk = files_under(home.job_dir(lora_job["id"]) / "output")
    assert {n: zf.read(n) for n in zf.namelist()} == on_disk
    assert {n.split("/")[0] for n in on_disk} >= {"checkpoint-10", "checkpoint-20", "final"}


@pytest.mark.parametrize("bad", ["../x", "..", "a/b", "checkpoint-10/../../..", ".hidden", "..\\x"])
def test_checkpoint_names_that_leave_the_output_folder_are_rejected(lora_job, bad) -> None:
    with pytest.raises(InvalidInput) as err:
        model_zip(lora_job["id"], bad)
    assert err.value.field == "checkpoint"


def test_unknown_checkpoints_jobs_and_other_owners_jobs_are_not_found(lora_job) -> None:
    with pytest.raises(NotFound):
        model_zip(lora_job["id"], "checkpoint-999")
    with pytest.raises(NotFound):
        model_zip("job-doesnotexist", "final")
    with pytest.raises(NotFound):
        model_zip(lora_job["id"], "final", owner="someone-else")
    with pytest.raises(NotFound):
        logs_zip(lora_job["id"], owner="someone-else")


# --- log downloads ----------------------------------------------------------------------------

def test_logs_zip_holds_the_training_log_and_the_metrics_history(lora_job) -> None:
    name, chunks = logs_zip(lora_job["id"])

    assert name == f"job_{short(lora_job['id'])}_logs.zip"
    zf = unzip(chunks)
    assert zf.namelist() == ["training.log", "progress.json"]
    assert zf.read("training.log") == (home.job_dir(lora_job["id"]) / "training.log").read_bytes()
    assert b"Training completed" in zf.read("training.log")
    history = json.loads(zf.read("progress.json"))
    assert history == JobService().metrics(lora_job["id"])
    assert {e["type"] for e in history} >= {"status", "train", "eval", "checkpoint"}


def test_progress_json_skips_a_line_being_written_and_handles_no_metrics(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"type": "train", "step": 5}\n\n{"type": "eval", "step": 5}\n{"type": "tr')
    assert json.loads(b"".join(progress_json(path))) == [{"type": "train", "step": 5}, {"type": "eval", "step": 5}]
    assert json.loads(b"".join(progress_json(tmp_path / "missing.jsonl"))) == []
