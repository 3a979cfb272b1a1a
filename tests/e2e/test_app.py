"""The Voila web app in a real headless Chromium: upload, configure, train, pause, resume.

Voila serves ``notebooks/workbench.ipynb`` over a fresh WORKBENCH_HOME; Playwright drives
Debian's chromium. Screenshots go to ``test-artifacts/e2e/``.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from workbench.datasets import SAMPLE_DATASET
from workbench.testing import scratch_home

pytestmark = pytest.mark.e2e
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "workbench.ipynb"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def voila(tmp_path_factory: pytest.TempPathFactory, tiny_chat_dir: Path) -> Iterator[str]:
    with scratch_home(tmp_path_factory.mktemp("e2e-home"), tiny_chat=tiny_chat_dir,
                      env={"WORKBENCH_MAX_CONCURRENT_JOBS": "1", "WORKBENCH_REMOTE_URL": None}) as home:
        port = _free_port()
        log = open(home / "voila.log", "wb")
        # as `workbench up` starts it: behind the local token, read from the home inside the process
        proc = subprocess.Popen([sys.executable, "-m", "workbench.widgets.serve", str(NOTEBOOK), f"--port={port}",
                                 "--host=127.0.0.1"], env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.3)
        token = (home / "token").read_text().strip()
        yield f"http://127.0.0.1:{port}/?token={token}"
        proc.terminate()
        proc.wait(timeout=20)
        from workbench.jobs.service import JobService

        for job in JobService().list():  # cancel anything left running in that home
            if job["status"] not in ("completed", "failed", "cancelled"):
                JobService().cancel(job["id"], grace=1)


def test_the_app_is_closed_without_the_token(voila: str) -> None:
    import httpx

    base = voila.split("?", 1)[0]
    r = httpx.get(base, follow_redirects=False, timeout=30)
    assert r.status_code in (302, 401, 403) and ".wb-app" not in r.text
    assert httpx.get(base + "?token=wb_wrong", follow_redirects=False, timeout=30).status_code in (302, 401, 403)
    assert httpx.get(voila, follow_redirects=False, timeout=60).status_code == 200


@pytest.fixture
def page(voila: str):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1100})
        pg.set_default_timeout(60_000)
        pg.goto(voila)
        pg.wait_for_selector(".wb-app", timeout=120_000)
        yield pg
        browser.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def pick(page, selector: str, contains: str) -> None:
    """Choose the first option of a dropdown whose label contains ``contains``."""
    select = page.locator(f"{selector} select")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        labels = select.locator("option").all_text_contents()
        if any(contains in label.replace("\xa0", " ") for label in labels):
            break
        time.sleep(0.3)
    match = [label for label in labels if contains in label.replace("\xa0", " ")]  # widgets render nbsp
    assert match, f"{selector}: no option contains {contains!r} in {labels}"
    select.select_option(label=match[0])


def set_field(page, selector: str, value: str) -> None:
    box = page.locator(f"{selector} input").first
    box.fill(value)
    box.press("Enter")
    box.blur()


def tab(page, title: str) -> None:
    page.locator(".wb-app-tabs .lm-TabBar-tab", has_text=title).first.click()


def text(page, selector: str) -> str:
    return page.locator(selector).first.inner_text()


def wait_text(page, selector: str, *needles: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    content = ""
    while time.monotonic() < deadline:
        content = text(page, selector)
        if any(n in content for n in needles):
            return content
        time.sleep(0.3)
    raise AssertionError(f"{selector} never showed {needles}: {content[:500]}")


def loss_points(page) -> int:
    """Points drawn on the loss chart's train line (bqplot draws an SVG path)."""
    d = page.locator(".wb-monitor-loss-chart path.line").first.get_attribute("d") or ""
    return d.count("L") + (1 if d.startswith("M") else 0)


def test_a_new_user_uploads_configures_trains_pauses_and_resumes(page) -> None:
    # 1. upload the sample dataset and see its stats
    with page.expect_file_chooser() as chooser:  # FileUpload opens a native file dialog
        page.locator("button.wb-dataset-upload").first.click()
    chooser.value.set_files(str(SAMPLE_DATASET))
    wait_text(page, "button.wb-dataset-upload", "(1)", timeout=30)
    set_field(page, ".wb-dataset-name", "e2e support chats")
    page.locator(".wb-dataset-register").first.click()
    stats = wait_text(page, ".wb-dataset-stats", "400")
    assert "samples" in stats.lower()
    shot(page, "1-dataset-stats")

    # 2. save a config
    tab(page, "Configs")
    pick(page, ".wb-config-template", "lora")
    set_field(page, ".wb-config-name", "e2e config")
    for field, value in {"max_steps": "150", "logging_steps": "5", "save_steps": "25", "torch_threads": "1",
                         "learning_rate": "0.003"}.items():
        set_field(page, f".wb-field-training-{field}", value)
    page.locator(".wb-config-save").first.click()
    assert "Saved" in wait_text(page, ".wb-config-status", "Saved")
    shot(page, "2-config-saved")

    # 3. start a job from the dataset and the config
    tab(page, "Training")
    page.locator(".wb-monitor-refresh").first.click()
    pick(page, ".wb-monitor-dataset", "e2e support chats")
    pick(page, ".wb-monitor-config", "e2e config")
    page.locator(".wb-monitor-start").first.click()
    wait_text(page, ".wb-monitor-status", "running", timeout=120)

    # 4. the loss chart grows
    deadline = time.monotonic() + 120
    first = 0
    while time.monotonic() < deadline and (first := loss_points(page)) < 2:
        time.sleep(0.5)
    assert first >= 2
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and loss_points(page) <= first:
        time.sleep(0.5)
    assert loss_points(page) > first
    shot(page, "3-training")

    # 5. pause, then resume
    page.locator(".wb-monitor-pause button, button.wb-monitor-pause").first.click()
    wait_text(page, ".wb-monitor-status", "paused", timeout=120)
    assert page.locator("button.wb-monitor-resume").first.is_enabled()
    assert page.locator("button.wb-monitor-pause").first.is_disabled()
    shot(page, "4-paused")
    page.locator("button.wb-monitor-resume").first.click()
    wait_text(page, ".wb-monitor-status", "completed", timeout=240)

    # 6. the best checkpoint is marked
    page.wait_for_selector(".wb-monitor-checkpoints .wb-best-checkpoint", timeout=60_000)
    assert "★" in text(page, ".wb-monitor-checkpoints")
    shot(page, "5-completed")


def test_a_user_deploys_a_finished_job_chats_with_it_and_stops_it(page, finished_lora_job_source) -> None:
    from workbench.testing import copy_job

    job = copy_job(finished_lora_job_source, name="e2e finished job")  # in the app's home (the fixture's)
    tab(page, "Deploy")
    page.locator("button.wb-deploy-refresh").first.click()
    pick(page, ".wb-deploy-job", job["id"])
    pick(page, ".wb-deploy-checkpoint", "final")
    set_field(page, ".wb-deploy-name", "browser bot")
    set_field(page, ".wb-deploy-budget", "1")
    set_field(page, ".wb-deploy-cost", "0.25")
    page.locator("button.wb-deploy-button").first.click()
    assert "browser-bot" in wait_text(page, ".wb-deploy-message", "deployed as model", "error", timeout=180)
    wait_text(page, ".wb-deploy-status", "active", timeout=60)
    shot(page, "6-deployed")

    page.locator(".wb-chat-prompt textarea").first.fill("What is the capital of France?")
    page.locator("button.wb-chat-send").first.click()
    said = wait_text(page, ".wb-chat-transcript", " tokens · ", timeout=120)
    assert "chatcmpl-" in said
    assert "$0.2500 of $1.00 (25.0%)" in wait_text(page, ".wb-deploy-status", "(25.0%)", timeout=30)  # the gauge
    page.locator("button.wb-chat-up").first.click()  # thumbs up on the reply: into the analytics' quality
    assert "rated chatcmpl-" in wait_text(page, ".wb-chat-feedback", "rated", timeout=30)
    shot(page, "7-chat")

    page.locator("button.wb-deploy-stop").first.click()
    wait_text(page, ".wb-deploy-message", "stopped:", timeout=60)
    assert "stopped" in wait_text(page, ".wb-deploy-status", "stopped", timeout=30)
    assert page.locator("button.wb-chat-send").first.is_disabled()
    shot(page, "8-stopped")

    # the Analytics tab shows that chat: one message, its cost, the rating, and the job it was trained by
    tab(page, "Analytics")
    page.locator("button.wb-an-refresh").first.click()
    totals = wait_text(page, ".wb-an-totals", "Messages", timeout=60)
    assert re.search(r"Messages\s*1(?!\d)", totals) and "$0.2500" in totals
    assert re.search(r"Success\s*100\.0%", totals)  # the thumbs up
    models = wait_text(page, ".wb-an-models", "browser-bot", timeout=30)
    assert job["id"] in models and "final" in models
    assert page.locator(".wb-an-latency-chart path.line").count() >= 1
    shot(page, "8b-analytics")


def test_a_user_uploads_to_the_knowledge_base_searches_and_deletes(page, tmp_path) -> None:
    doc = tmp_path / "catering.md"
    doc.write_text("# Orbital Catering\n\n## Staff\n\nChef Marisol Ventura leads the Orbital Catering kitchen "
                   "on deck nine.\n\n## Menu\n\nThe Orbital Catering menu serves kelp noodles on Tuesdays.\n")
    tab(page, "Knowledge")
    with page.expect_file_chooser() as chooser:
        page.locator("button.wb-kb-upload").first.click()
    chooser.value.set_files(str(doc))
    wait_text(page, "button.wb-kb-upload", "(1)", timeout=30)
    page.locator("button.wb-kb-upload-button").first.click()
    wait_text(page, ".wb-kb-message", "uploaded", timeout=60)
    wait_text(page, ".wb-kb-documents", "processed", timeout=180)  # the list follows the background work
    shot(page, "9-knowledge-processed")

    set_field(page, ".wb-kb-query", "Who leads the kitchen?")
    page.locator("button.wb-kb-search").first.click()
    hits = wait_text(page, ".wb-kb-hits", "#1", timeout=60)
    assert "Marisol" in hits and "catering.md" in hits
    page.locator("button.wb-kb-neighbourhood-button").first.click()
    assert "Orbital Catering" in wait_text(page, ".wb-kb-neighbourhood", "Entities", timeout=30)
    shot(page, "10-knowledge-search")

    page.locator("button.wb-kb-delete").first.click()
    wait_text(page, ".wb-kb-message", "deleted:", timeout=60)
    assert "no documents yet" in wait_text(page, ".wb-kb-documents", "no documents yet", timeout=30)
    page.locator("button.wb-kb-search").first.click()
    assert "nothing found" in wait_text(page, ".wb-kb-hits", "nothing found", timeout=60)
