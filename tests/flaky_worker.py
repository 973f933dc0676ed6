"""A worker for tests/test_workers.py that fails as `FLAKY_WORKER` tells it:
`<number>:<starts>` makes worker <number> meet an unexpected exception while
it makes its app, at its first <starts> starts (`*`: at every one); the
others serve as usual. The starts are counted in files under
`FLAKY_WORKER_DIR`."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

from ollama_gateway import serve


def worker_main(settings: Any, number: int, shared: Any, ready: ctypes.c_bool) -> None:
    failing, starts = os.environ["FLAKY_WORKER"].split(":")
    if number == int(failing):
        counter = Path(os.environ["FLAKY_WORKER_DIR"]) / f"worker-{number}"
        with counter.open("a") as file:
            file.write("start\n")
        started = len(counter.read_text().splitlines())
        if starts == "*" or started <= int(starts):

            def create_app(*args: Any, **kwargs: Any) -> Any:
                raise RuntimeError(f"worker-{number} fails its start {started}")

            serve.create_app = create_app  # type: ignore[attr-defined]
    serve._worker_main(settings, number, shared, ready)


# `python -m tests.flaky_worker serve ...`: the gateway, with these workers.
if __name__ == "__main__":
    import sys

    from ollama_gateway.cli import main
    from tests import flaky_worker  # by its name, for the workers to import

    serve._worker_main = flaky_worker.worker_main
    serve.RESTART_PAUSE = float(os.environ.get("FLAKY_WORKER_PAUSE", "1"))
    sys.exit(main())
