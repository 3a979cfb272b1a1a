"""``python -m workbench.widgets.serve NOTEBOOK --host H --port P``: the Voila app behind the local token.

Voila asks for the token (``?token=`` once, then a cookie) as Jupyter does, so the app, which
drives the core in-process, is never open to whoever reaches the port. The token is read
from the home here, inside the process, so it never shows in the process list.
"""

from __future__ import annotations

import argparse
import sys


def voila_argv(notebook: str, host: str, port: int, token: str) -> list[str]:
    # no tracebacks to the browser; warnings and errors only in the log: Voila's own start-up lines end
    # with a masked `?token=...` URL, which reads like the one to open (`workbench up` prints the real one)
    return ["voila", notebook, "--no-browser", f"--port={port}", f"--Voila.ip={host}", f"--Voila.token={token}",
            "--VoilaConfiguration.show_tracebacks=False", "--Voila.log_level=WARN"]


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
