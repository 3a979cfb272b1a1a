"""Every panel over a RemoteBackend whose server is gone shows the failure inline, never raises.

Two ways for a server to be gone: nothing listens on the port (``httpx.ConnectError``), or it
accepts and drops the connection before answering (``httpx.RemoteProtocolError``).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from workbench.widgets.backend import RemoteBackend
from workbench.widgets.compare import JobsComparison
from workbench.widgets.configs import ConfigEditor
from workbench.widgets.datasets import DatasetPanel
from workbench.widgets.monitor import TrainingMonitor


def _closed_port() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield f"http://127.0.0.1:{port}"  # bound once, closed: nothing listens there


def _dropping_server() -> Iterator[str]:
    """Accepts each connection and closes it at once, like a server that died mid-request."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()


@pytest.fixture(params=["closed-port", "dropped-connection"])
def gone(request: pytest.FixtureRequest, home: Path) -> Iterator[RemoteBackend]:
    servers = {"closed-port": _closed_port, "dropped-connection": _dropping_server}
    for url in servers[request.param]():
        backend = RemoteBackend(url, token="wb_" + "x" * 43)
        yield backend
        backend.client.close()


def _shown(html: str, css_class: str) -> bool:
    return css_class in html and ("Error" in html or "⚠️" in html)


def test_dataset_panel(gone: RemoteBackend) -> None:
    panel = DatasetPanel(gone)
    panel.report.value = ""
    panel.sample_button.click()
    assert _shown(panel.report.value, "wb-error"), panel.report.value
    panel.path.value = str(Path(__file__))
    panel.register_path_button.click()
    assert _shown(panel.report.value, "wb-error")


def test_config_editor(gone: RemoteBackend) -> None:
    editor = ConfigEditor(gone)
    editor.status.value = ""
    editor.name.value = "cfg"
    editor.save_button.click()
    assert _shown(editor.status.value, "wb-error"), editor.status.value


def test_training_monitor(gone: RemoteBackend) -> None:
    monitor = TrainingMonitor(gone)
    assert _shown(monitor.error.value, "wb-error-text")  # the first load, guarded too
    monitor.error.value = ""
    monitor.refresh_button.click()
    assert _shown(monitor.error.value, "wb-error-text"), monitor.error.value
    monitor.error.value = ""
    monitor.model.options, monitor.dataset.options = ["tiny-chat"], ["dataset-1"]
    monitor.model.value, monitor.dataset.value = "tiny-chat", "dataset-1"
    monitor.start_button.click()
    assert _shown(monitor.error.value, "wb-error-text")
    monitor.error.value = ""
    monitor.job_id = "job-1"
    monitor._apply_status({"status": "running"})  # as if it had been followed
    monitor.pause_button.click()
    assert _shown(monitor.error.value, "wb-error-text")


def test_jobs_comparison(gone: RemoteBackend) -> None:
    panel = JobsComparison(gone)
    panel.error.value = ""
    panel.refresh_button.click()
    assert _shown(panel.error.value, "wb-error-text"), panel.error.value
    panel.error.value = ""
    panel.jobs.options = ["job-1", "job-2"]
    panel.jobs.value = ("job-1", "job-2")
    panel.run_button.click()
    assert _shown(panel.error.value, "wb-error-text")


def test_the_guard_catches_transport_errors_only(home: Path) -> None:
    import httpx

    from workbench.client import APIError
    from workbench.errors import WorkbenchError
    from workbench.widgets.common import backend_errors

    assert {WorkbenchError, APIError, httpx.HTTPError} <= set(backend_errors())
    assert not any(issubclass(KeyError, e) for e in backend_errors())  # a bug still raises
