"""``make test`` on a fresh machine installs what its tests need, or says exactly what is missing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "test-deps.sh"


def test_make_test_installs_the_test_dependencies_first() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    lines = [line.strip() for line in recipe.splitlines()[1:]]
    assert lines[0] == "scripts/test-deps.sh" and "pytest" in lines[1]
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")  # CI is a thin call of it


def test_without_chromium_and_without_root_it_fails_with_the_command_to_run(tmp_path: Path) -> None:
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    (fakebin / "id").write_text("#!/bin/sh\necho 1000\n")  # not root, and no sudo on PATH
    (fakebin / "id").chmod(0o755)
    env = {"PATH": str(fakebin), "WORKBENCH_CHROMIUM": str(tmp_path / "no-chromium")}
    r = subprocess.run(["/bin/bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "apt-get install -y chromium" in r.stderr


def test_with_chromium_present_it_does_nothing(tmp_path: Path) -> None:
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    r = subprocess.run(["bash", str(SCRIPT)], env={**os.environ, "WORKBENCH_CHROMIUM": str(fake)},
                       capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stderr) == (0, "")
