"""``/api/training/dataset``: streamed uploads validated by the core, size limits, safe file names."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from workbench.server.app import create_app
from workbench.server.routes.datasets import DatasetCreated, DatasetDetail, DatasetList

from .conftest import IdleExecutor, bearer, chat_lines, local_headers, multipart, upload


def test_upload_lists_and_reads_back(alice: TestClient) -> None:
    r = upload(alice, name="Customer Support Chat")
    assert r.status_code == 201, r.text
    created = DatasetCreated.model_validate(r.json())
    ds = created.dataset
    assert (ds.name, ds.samples, ds.format) == ("Customer Support Chat", 400, "jsonl")
    listing = DatasetList.model_validate(alice.get("/api/training/dataset").json())
    assert ds.id in [d.id for d in listing.datasets]
    detail = alice.get(f"/api/training/dataset/{ds.id}")
    assert detail.status_code == 200
    DatasetDetail.model_validate(detail.json())
    assert detail.json()["stats"]["samples"] == 400 and detail.json()["stats"]["tokens"] is None


def test_name_defaults_to_the_file_stem(alice: TestClient) -> None:
    r = upload(alice, chat_lines(3), filename="support-v2.jsonl")
    assert r.status_code == 201 and r.json()["dataset"]["name"] == "support-v2"


def test_csv_with_a_column_mapping(alice: TestClient) -> None:
    csv = b"question,answer\nWhat is 2+2?,4\nCapital of France?,Paris\n"
    r = upload(alice, csv, filename="qa.csv", format="csv",
               column_mapping=json.dumps({"prompt": "question", "completion": "answer"}))
    assert r.status_code == 201, r.text
    assert (r.json()["dataset"]["samples"], r.json()["dataset"]["format"]) == (2, "csv")


def test_bad_records_are_422_with_line_numbered_errors(alice: TestClient, unchanged: Any) -> None:
    bad = chat_lines(2) + b'{"messages": [{"role": "robot", "content": "x"}]}\nnot json\n' + chat_lines(1)
    r = upload(alice, bad, filename="bad.jsonl")
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "VALIDATION_FAILED"
    errors = err["details"]["errors"]
    assert [e["line"] for e in errors] == [3, 4]
    assert errors[0]["field"].startswith("messages[0].role") and errors[0]["message"]
    unchanged()  # nothing stored: no record, no folder


@pytest.mark.parametrize("fields, field", [
    ({"format": "xml"}, "format"),
    ({"column_mapping": "{not json"}, "column_mapping"),
    ({"column_mapping": "[1, 2]"}, "column_mapping"),
    ({"name": ""}, "name"),
])
def test_bad_fields_are_422_naming_them(alice: TestClient, unchanged: Any, fields: dict[str, str],
                                        field: str) -> None:
    r = upload(alice, chat_lines(2), **fields)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    unchanged()


def test_missing_file_part_is_422_and_wrong_media_type_415(alice: TestClient, unchanged: Any) -> None:
    r = alice.post("/api/training/dataset", data={"name": "x"}, files={"other": ("", b"")})
    assert r.status_code == 422 and r.json()["error"]["field"] == "file"
    r = alice.post("/api/training/dataset", json={"file": "x"})
    assert r.status_code == 415
    r = alice.post("/api/training/dataset", content=b"--x\r\nbroken", headers={
        "Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 400
    unchanged()


@pytest.mark.parametrize("filename", ["../x.jsonl", "../../etc/passwd", "/abs/x.jsonl", "a/b.jsonl",
                                      "..\\x.jsonl", "C:\\temp\\x.jsonl", "..", "."])
def test_path_in_the_upload_filename_is_400(alice: TestClient, unchanged: Any, filename: str) -> None:
    body, headers = multipart(filename, chat_lines(2))
    r = alice.post("/api/training/dataset", content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "INVALID_PATH"
    unchanged()


@pytest.fixture(scope="module")
def small(server_home: Path, users: dict[str, str]) -> Iterator[TestClient]:
    """A server that accepts uploads of at most 2 KB."""
    app = create_app(multi_user=True, max_upload_bytes=2048, executor=IdleExecutor())
    with TestClient(app, headers=bearer(users["alice"])) as client:
        yield client


def test_oversized_upload_is_413_from_content_length(small: TestClient, unchanged: Any) -> None:
    r = upload(small, chat_lines(500))  # ~40 KB, well past 2 KB + the multipart allowance
    assert r.status_code == 413 and r.json()["error"]["code"] == "TOO_LARGE"
    r = upload(small, chat_lines(2) * 20)  # past 2 KB, within the allowance: caught while counting the part
    assert r.status_code == 413
    unchanged()
    assert upload(small, chat_lines(2)).status_code == 201  # under the limit


def test_oversized_upload_is_413_while_streaming(small: TestClient, server_home: Path) -> None:
    body, headers = multipart("big.jsonl", chat_lines(2000))

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count
        view = memoryview(body)
        for i in range(0, len(view), 8192):
            yield bytes(view[i:i + 8192])

    before = len(small.get("/api/training/dataset").json()["datasets"])
    r = small.post("/api/training/dataset", content=chunks(), headers=headers)
    assert r.status_code == 413
    assert len(small.get("/api/training/dataset").json()["datasets"]) == before
    assert not [p for p in (server_home / "tmp").iterdir() if p.name.startswith(".upload-")]


def test_upload_limit_from_the_environment(server_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_MAX_UPLOAD_MB", "0.001")  # ~1 KB
    with TestClient(create_app(multi_user=False, executor=IdleExecutor()), headers=local_headers()) as client:
        assert upload(client, chat_lines(100)).status_code == 413
        assert upload(client, chat_lines(1)).status_code == 201


def test_split_and_delete(alice: TestClient) -> None:
    ds = upload(alice, chat_lines(20), filename="twenty.jsonl").json()["dataset"]
    r = alice.post(f"/api/training/dataset/{ds['id']}/split", json={"eval_fraction": 0.25, "seed": 1})
    assert r.status_code == 201, r.text
    parts = r.json()
    assert (parts["train"]["samples"], parts["eval"]["samples"]) == (15, 5)
    assert parts["eval"]["parent_id"] == ds["id"]
    r = alice.post(f"/api/training/dataset/{ds['id']}/split", json={"eval_fraction": 1.5})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "eval_fraction")
    assert alice.delete(f"/api/training/dataset/{ds['id']}").json() == {"success": True}
    assert alice.get(f"/api/training/dataset/{ds['id']}").status_code == 404


def test_another_users_dataset_is_404_and_unlisted(alice: TestClient, bob: TestClient) -> None:
    ds = upload(alice, chat_lines(4), filename="private.jsonl").json()["dataset"]
    assert ds["id"] not in [d["id"] for d in bob.get("/api/training/dataset").json()["datasets"]]
    for r in (bob.get(f"/api/training/dataset/{ds['id']}"),
              bob.delete(f"/api/training/dataset/{ds['id']}"),
              bob.post(f"/api/training/dataset/{ds['id']}/split", json={})):
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    assert alice.get(f"/api/training/dataset/{ds['id']}").status_code == 200


def test_upload_streams_to_a_temp_file_that_is_removed(alice: TestClient, server_home: Path) -> None:
    assert upload(alice, chat_lines(5)).status_code == 201
    assert upload(alice, b"garbage\n").status_code == 422
    assert not [p for p in (server_home / "tmp").iterdir() if p.name.startswith(".upload-")]


def test_file_part_sent_as_io(alice: TestClient) -> None:
    files = {"file": ("io.jsonl", io.BytesIO(chat_lines(2)), "application/x-ndjson")}
    r = alice.post("/api/training/dataset", files=files)
    assert r.status_code == 201


def test_preview_marks_the_tokens_training_learns_from(alice: TestClient, bob: TestClient) -> None:
    ds = upload(alice, name="preview me").json()["dataset"]
    r = alice.get(f"/api/training/dataset/{ds['id']}/preview", params={"model": "tiny-chat", "index": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    trained = [t for t in body["tokens"] if t["trained"]]
    masked = [t for t in body["tokens"] if not t["trained"]]
    assert trained and masked and body["trained_tokens"] == len(trained)
    assert "assistant" in "".join(t["text"] for t in masked)  # the role header is never trained on
    assert alice.get(f"/api/training/dataset/{ds['id']}/preview", params={"index": 10**6}).status_code == 422
    assert bob.get(f"/api/training/dataset/{ds['id']}/preview").status_code == 404
