"""The job folder's format: one home for every file a job writes and every reader of them.

A job is a folder (``$WORKBENCH_HOME/jobs/<id>/``). The kernel writes it, every other process
reads it; nothing is shared in memory. This package knows only the store, records and home,
so every area (jobs, training, results, the server, the widgets, serving) can use it without
pulling in any other:

* :mod:`.layout` — the folder and every file name in it (:class:`JobFolder`);
* :mod:`.events` — the events log ``metrics.jsonl``: append, iterate, read backwards, typed shapes;
* :mod:`.summary` — the fold of the events into ``summary.json`` (what status reads, O(1));
* :mod:`.rows` — the per-step rows ``history.jsonl`` (train and eval merged) and their one reader;
* :mod:`.checkpoints` — list, best, find by ``best``/``final``/``step-N``, prune, describe.
"""

from .layout import JobFolder, job_folder

__all__ = ["JobFolder", "job_folder"]
