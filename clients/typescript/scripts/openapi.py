"""Print the server's OpenAPI document, built in-process: what ``GET /openapi.json`` answers.

    python clients/typescript/scripts/openapi.py > clients/typescript/openapi.json

``make ts-sdk`` runs this, then ``npm run generate``. The app is built in a throwaway
``WORKBENCH_HOME`` (building it writes a local token there), so the real home is left alone,
and no server needs to run.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any


def build_openapi() -> dict[str, Any]:
    """The document the app serves (``create_app`` builds it once, from the route declarations)."""
    with tempfile.TemporaryDirectory(prefix="wb-openapi-") as home:
        saved = os.environ.get("WORKBENCH_HOME")
        os.environ["WORKBENCH_HOME"] = home
        try:
            from workbench.server.app import create_app
            from workbench.testing import IdleExecutor

            return create_app(executor=IdleExecutor()).state.openapi
        finally:
            if saved is None:
                os.environ.pop("WORKBENCH_HOME", None)
            else:
                os.environ["WORKBENCH_HOME"] = saved


def render(spec: dict[str, Any]) -> str:
    """The committed form: 2-space JSON in the server's key order, one trailing newline."""
    return json.dumps(spec, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(build_openapi()))
