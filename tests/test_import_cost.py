"""The CLI, the server and the app's local backend never import the training stack.

torch, transformers and peft cost seconds and hundreds of MB; only a job's kernel needs them.
papermill, nbformat and pandas stay out too: the runner imports papermill when a job runs.
Each check runs in a fresh interpreter, so nothing imported by another test counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "peft", "papermill", "nbformat", "pandas", "accelerate", "tokenizers")

# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so a child of a big test
# process would report its parent's peak; VmHWM belongs to the new process image alone.
PROBE = """
import json, sys
{code}
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"heavy": [m for m in {heavy!r} if m in sys.modules], "rss_mb": hwm / 1024}}))
"""


def probe(code: str, home: Path) -> dict:
    env = {**os.environ, "WORKBENCH_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE.format(code=code, heavy=HEAVY)], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["workbench.cli", "workbench.server.app", "workbench.jobs.service",
                                    "workbench.jobs.runner", "workbench.widgets.backend"])
def test_importing_a_front_end_module_pulls_in_no_training_stack(module: str, home: Path) -> None:
    assert probe(f"import {module}", home)["heavy"] == []


@pytest.mark.parametrize("argv", [["--help"], ["jobs", "list"], ["jobs", "show", "job-0000000000"]])
def test_cli_commands_stay_light_on_an_empty_home(argv: list[str], home: Path) -> None:
    code = ("from workbench.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass")
    got = probe(code, home)
    assert got["heavy"] == []
    assert got["rss_mb"] < 100


def test_the_app_backend_lists_without_the_training_stack(home: Path) -> None:
    code = ("from workbench.widgets.backend import LocalBackend\n"
            "b = LocalBackend()\n"
            "b.list_jobs(); b.list_datasets(); b.list_configs(); b.templates()")
    assert probe(code, home)["heavy"] == []


def test_the_server_app_builds_without_the_training_stack(home: Path) -> None:
    code = "from workbench.server.app import create_app\ncreate_app()"
    assert probe(code, home)["heavy"] == []
