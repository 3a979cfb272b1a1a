"""Every file of a job folder, named once.

``JobFolder(path)`` gives the paths; nothing here reads or writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import home

SPEC = "job.json"            # resolved config, dataset refs + sha256, versions, seed
EVENTS = "metrics.jsonl"     # one JSON event per line (see .events)
ROWS = "history.jsonl"       # one row per logged step, train + eval merged (see .rows)
SUMMARY = "summary.json"     # the events folded (see .summary)
LOG = "training.log"         # human-readable log
CONTROL = "control"          # "pause" or "cancel", written by the service, read by the training callback
RESULT = "result.json"       # the run's outcome, written by the engine: completed | paused | failed
KERNEL = "kernel.json"       # the running kernel: pid, create_time, connection_file, run
RANKS = "ranks"              # ranks/rank-<i>.json: each data-parallel process (pid, create_time, run)
HEARTBEAT = "heartbeat"      # touched by the runner while it lives
RUNNER_LOG = "runner.log"    # the runner's own stdout/stderr
NOTEBOOKS = "notebooks"      # notebooks/run-<n>.ipynb, every executed papermill notebook
OUTPUT = "output"            # output/checkpoint-<step>/ and output/final/
FINAL = "final"


@dataclass(frozen=True)
class JobFolder:
    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def spec(self) -> Path:
        return self.path / SPEC

    @property
    def events(self) -> Path:
        return self.path / EVENTS

    @property
    def rows(self) -> Path:
        return self.path / ROWS

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    @property
    def log(self) -> Path:
        return self.path / LOG

    @property
    def control(self) -> Path:
        return self.path / CONTROL

    @property
    def result(self) -> Path:
        return self.path / RESULT

    @property
    def kernel(self) -> Path:
        return self.path / KERNEL

    @property
    def ranks(self) -> Path:
        return self.path / RANKS

    def rank_file(self, rank: int) -> Path:
        return self.path / RANKS / f"rank-{rank}.json"

    @property
    def heartbeat(self) -> Path:
        return self.path / HEARTBEAT

    @property
    def runner_log(self) -> Path:
        return self.path / RUNNER_LOG

    @property
    def output(self) -> Path:
        return self.path / OUTPUT

    @property
    def final(self) -> Path:
        return self.path / OUTPUT / FINAL

    def notebook(self, run: int) -> Path:
        return self.path / NOTEBOOKS / f"run-{run}.ipynb"


def job_folder(job_id_or_path: str | Path) -> JobFolder:
    """The folder of a job id (under the current home), or of a folder path."""
    if isinstance(job_id_or_path, Path):
        return JobFolder(job_id_or_path)
    return JobFolder(home.job_dir(job_id_or_path))
