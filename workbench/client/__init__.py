"""Python SDK for the workbench REST API: one method per operation, over a pooled httpx client.

    from workbench.client import TrainingClient

    with TrainingClient("http://127.0.0.1:8000", token="wb_...") as wb:
        ds = wb.upload_dataset("chats.jsonl", name="support")
        cfg = wb.create_config("lora-100", {"training": {"max_steps": 100}}, template_type="lora")
        job = wb.start_training("tiny-chat", ds["id"], cfg["id"])
        for status in wb.monitor_training(job["job_id"], progress=True):
            pass
        wb.download_model(job["job_id"], "downloads/")

Return values are the server's JSON. Single-resource wrappers are taken off where the API
wraps one thing (``{"config": ...}``, ``{"dataset": ...}``) and list endpoints return the list,
so ``wb.list_models()[0]["id"]`` reads naturally; job endpoints return the documented object
(``job_id``, ``status``, …) unchanged. Any non-2xx response raises :class:`APIError` carrying
the API's ``code``, ``message`` and ``field``; transport failures are ``httpx.HTTPError``.

The server always requires a bearer token: without ``token=``, :func:`find_token` reads
``WORKBENCH_TOKEN``, else (loopback servers only) the local user's token in the home.

Layout: ``_errors`` (:class:`APIError`), ``_transport`` (the httpx plumbing, token lookup,
``.part`` downloads), ``_sse`` (the event-stream reader), ``_client`` (:class:`TrainingClient`,
its methods grouped by API area) and ``_operations`` (:data:`OPERATIONS`, operationId → method).
"""

from __future__ import annotations

from ._client import FINAL_STATES, TrainingClient
from ._errors import APIError
from ._operations import OPERATIONS
from ._sse import parse_sse
from ._transport import filename_from_disposition, find_token

__all__ = [
    "FINAL_STATES",
    "OPERATIONS",
    "APIError",
    "TrainingClient",
    "filename_from_disposition",
    "find_token",
    "parse_sse",
]

# Public classes say they live here, as httpx's do.
for _obj in (TrainingClient, APIError):
    _obj.__module__ = __name__
del _obj
