"""``python -m workbench.widgets.serve NOTEBOOK --host H --port P``: the Voila app behind the local token.

Voila asks for the token (``?token=`` once, then a cookie) as Jupyter does, so the app, which
drives the core in-process, is never open to whoever reaches the port. The token is read
from the home here, inside the process, so it never shows in the process list.
"""

from __future__ import annotations

import argparse
import sys


def voila_argv(notebook: str, host: str, port: int, token: str) -> list[str]:
    return ["voila", notebook, "--no-browser", f"--port={port}", f"--Voila.ip={host}", f"--Voila.token={token}",
            "--Voila.show_tracebacks=False"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workbench.widgets.serve")
    p.add_argument("notebook")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8866)
    args = p.parse_args(argv)

    from voila.app import main as voila_main

    from ..users import local_token

    sys.argv = voila_argv(args.notebook, args.host, args.port, local_token())
    voila_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
