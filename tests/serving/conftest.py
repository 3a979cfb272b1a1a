"""A real server with a finished tiny-chat LoRA job in its home, for the deployment tests.

Package-scoped: one uvicorn on a loopback port (``create_app()``, token required), one home
with a copy of the shared finished job (checkpoints 5 and 10, ``final``). The local user's
token is the ``openai`` SDK's ``api_key``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from workbench.client import TrainingClient
from workbench.testing import TrainedJob, copy_job, scratch_home, serve_in_thread


@dataclass
class Served:
    base_url: str
    token: str
    home: Path
    job_id: str

    def client(self) -> TrainingClient:
        return TrainingClient(self.base_url, token=self.token)

    def openai(self):  # noqa: ANN201
        from openai import OpenAI

        return OpenAI(base_url=f"{self.base_url}/v1", api_key=self.token, max_retries=0, timeout=120)


@pytest.fixture(scope="package")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_chat_dir: Path,
           finished_lora_job_source: TrainedJob) -> Iterator[Served]:
    from workbench.serving.engine import unload_all
    from workbench.server.app import create_app
    from workbench.users import local_token

    with scratch_home(tmp_path_factory.mktemp("serving-home"), tiny_chat=tiny_chat_dir) as home:
        job = copy_job(finished_lora_job_source)
        server, thread, port = serve_in_thread(create_app())
        try:
            yield Served(f"http://127.0.0.1:{port}", local_token(), home, job["id"])
        finally:
            server.should_exit = True
            thread.join(timeout=15)
            unload_all()
