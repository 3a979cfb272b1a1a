"""DatasetPanel, driven like a user would: set widget values, click buttons, read what is shown.

The backend is a real LocalBackend over an empty WORKBENCH_HOME; tokenizer-dependent views
use the session's tiny-chat build (offline).
"""

from __future__ import annotations

import html as htmllib
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from workbench.widgets.backend import LocalBackend
from workbench.widgets.datasets import DatasetPanel

GOOD = [
    {"messages": [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Hi there"},
                  {"role": "assistant", "content": "Hello! How can I help?"}]},
    {"messages": [{"role": "user", "content": "What is 2+2?"},
                  {"role": "assistant", "content": "4"}]},
    {"messages": [{"role": "user", "content": "Name a colour"},
                  {"role": "assistant", "content": "Blue"}]},
    {"messages": [{"role": "user", "content": "Say yes"},
                  {"role": "assistant", "content": "Yes"}]},
]


def jsonl(records: list[dict]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def file_value(name: str, content: bytes) -> tuple[dict, ...]:
    """What ipywidgets 8's FileUpload holds after the user picks a file (``last_modified`` is a datetime:
    the widget serialises it with ``.timestamp()``)."""
    return ({"name": name, "type": "", "size": len(content), "content": memoryview(content),
             "last_modified": datetime.now(timezone.utc)},)


@pytest.fixture
def backend(home: Path, tiny_chat_dir: Path, monkeypatch: pytest.MonkeyPatch) -> LocalBackend:
    monkeypatch.setenv("WORKBENCH_TINY_CHAT_CACHE", str(tiny_chat_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return LocalBackend()


@pytest.fixture
def panel(backend: LocalBackend) -> DatasetPanel:
    return DatasetPanel(backend)


def spans(html: str, cls: str) -> str:
    """The text of every token span of class ``cls``, joined, as the user reads it."""
    return htmllib.unescape("".join(re.findall(rf'<span class="{cls}"[^>]*>(.*?)</span>', html, flags=re.S)))


def visible_text(html: str) -> str:
    return htmllib.unescape(re.sub(r"<[^>]+>", "", html))


def upload(panel: DatasetPanel, name: str, content: bytes, dataset_name: str = "") -> None:
    panel.upload.value = file_value(name, content)
    panel.name.value = dataset_name
    panel.register_button.click()


def test_every_widget_that_matters_has_a_stable_css_class(panel: DatasetPanel) -> None:
    expected = {
        panel.widget: "wb-dataset-panel", panel.upload: "wb-dataset-upload", panel.name: "wb-dataset-name",
        panel.register_button: "wb-dataset-register", panel.path: "wb-dataset-path",
        panel.register_path_button: "wb-dataset-register-path", panel.sample_button: "wb-dataset-sample",
        panel.report: "wb-dataset-report", panel.datasets: "wb-dataset-list", panel.stats: "wb-dataset-stats",
        panel.histogram: "wb-dataset-histogram", panel.model: "wb-dataset-model",
        panel.preview: "wb-dataset-preview", panel.preview_index: "wb-dataset-preview-index",
        panel.split_button: "wb-dataset-split", panel.split_result: "wb-dataset-split-result",
    }
    for widget, cls in expected.items():
        assert cls in widget._dom_classes
    assert panel.upload.accept == ".jsonl,.csv"
    assert panel.model.value == "tiny-chat"


def test_uploading_a_good_file_registers_lists_and_shows_stats(panel: DatasetPanel, backend: LocalBackend) -> None:
    upload(panel, "chats.jsonl", jsonl(GOOD), "My chats")

    [record] = backend.list_datasets()
    assert record["name"] == "My chats" and record["samples"] == 4
    assert "Registered My chats" in panel.report.value and record["id"] in panel.report.value
    assert panel.datasets.value == record["id"]
    assert any(record["id"] == value for _, value in panel.datasets.options)
    # stats with the chosen model's tokenizer
    assert "samples" in panel.stats.value and ">4<" in panel.stats.value
    assert "tokens (total)" in panel.stats.value and "tokens per sample (p95)" in panel.stats.value
    assert "duplicates" in panel.stats.value and "computing" not in panel.stats.value
    assert panel.histogram.value.count("wb-hist-bar") == 10
    assert panel.upload.value == ()  # cleared for the next upload


def test_name_defaults_to_the_file_name(panel: DatasetPanel, backend: LocalBackend) -> None:
    upload(panel, "support.jsonl", jsonl(GOOD))
    assert [d["name"] for d in backend.list_datasets()] == ["support"]


def test_a_bad_file_shows_each_error_with_line_and_field_and_registers_nothing(
        panel: DatasetPanel, backend: LocalBackend) -> None:
    bad = jsonl([GOOD[0]]) + b"{not json\n" + jsonl([
        {"messages": [{"role": "wizard", "content": "hi"}, {"role": "assistant", "content": "x"}]},
        {"messages": [{"role": "user", "content": "no reply"}]},
    ])
    upload(panel, "bad.jsonl", bad, "Bad")

    assert backend.list_datasets() == []
    report = panel.report.value
    assert "wb-error" in report
    assert "line 2" in report and "json" in report
    assert "line 3" in report and "messages[0].role" in report
    assert "line 4" in report
    assert panel.datasets.options == ()


def test_the_report_caps_a_long_error_list_and_says_how_many_there_are(panel: DatasetPanel) -> None:
    bad = b"".join(b"{oops\n" for _ in range(80))
    upload(panel, "bad.jsonl", bad, "Bad")
    assert panel.report.value.count("wb-line-error") == 50
    assert "of 80 errors" in panel.report.value


def test_register_without_a_file_is_an_error_message_not_an_exception(panel: DatasetPanel) -> None:
    panel.register_button.click()
    assert "wb-error" in panel.report.value


def test_register_by_path_and_a_missing_path(panel: DatasetPanel, backend: LocalBackend, tmp_path: Path) -> None:
    path = tmp_path / "local.jsonl"
    path.write_bytes(jsonl(GOOD))
    panel.path.value = str(path)
    panel.register_path_button.click()
    assert [d["name"] for d in backend.list_datasets()] == ["local"]

    panel.path.value = str(tmp_path / "missing.jsonl")
    panel.register_path_button.click()
    assert "wb-error" in panel.report.value and "no such file" in panel.report.value
    assert len(backend.list_datasets()) == 1


def test_sample_button_registers_the_bundled_sample_once(panel: DatasetPanel, backend: LocalBackend) -> None:
    panel.sample_button.click()
    panel.sample_button.click()
    [record] = backend.list_datasets()
    assert record["is_sample"] and record["samples"] > 0
    assert panel.datasets.value == record["id"]
    assert "tokens (total)" in panel.stats.value


def test_preview_greys_out_masked_tokens(panel: DatasetPanel) -> None:
    upload(panel, "chats.jsonl", jsonl(GOOD), "My chats")
    html = panel.preview.value
    assert "sample 0 of 4" in html
    masked, trained = spans(html, "wb-tok-masked"), spans(html, "wb-tok-trained")
    assert '<span class="wb-tok-masked" style="color:#999">' in html  # greyed out
    # the system and user turns are context only; the assistant reply is what training learns
    assert "Be brief" in masked and "Hi there" in masked
    assert "Hello! How can I help?" in trained
    assert "Hi there" not in trained and "Be brief" not in trained
    assert "white-space:pre-wrap" in html and "\n" in masked

    panel.preview_index.value = 1
    assert "sample 1 of 4" in panel.preview.value and "What is 2+2?" in visible_text(panel.preview.value)
    assert spans(panel.preview.value, "wb-tok-trained").startswith("4")

    panel.preview_index.value = 99
    assert "wb-error" in panel.preview.value and "out of range" in panel.preview.value


def test_split_creates_train_and_eval_datasets(panel: DatasetPanel, backend: LocalBackend) -> None:
    upload(panel, "chats.jsonl", jsonl(GOOD), "My chats")
    parent = panel.datasets.value
    panel.eval_fraction.value = 0.25
    panel.seed.value = 7
    panel.split_button.click()

    names = sorted(d["name"] for d in backend.list_datasets())
    assert names == ["My chats", "My chats (eval)", "My chats (train)"]
    by_name = {d["name"]: d for d in backend.list_datasets()}
    assert by_name["My chats (eval)"]["samples"] == 1 and by_name["My chats (train)"]["samples"] == 3
    assert "My chats (train)" in panel.split_result.value and "My chats (eval)" in panel.split_result.value
    assert len(panel.datasets.options) == 3 and panel.datasets.value == parent

    panel.eval_fraction.value = 0.0
    panel.split_button.click()
    assert "wb-error" in panel.split_result.value and len(backend.list_datasets()) == 3


def test_an_unavailable_model_shows_an_error_in_the_stats(panel: DatasetPanel, backend: LocalBackend) -> None:
    upload(panel, "chats.jsonl", jsonl(GOOD), "My chats")
    panel.model.options = [*panel.model.options, "no-such/model-xyz"]
    panel.model.value = "no-such/model-xyz"
    assert "wb-error" in panel.stats.value
