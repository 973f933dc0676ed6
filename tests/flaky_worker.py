"""A worker for tests/test_workers.py that fails as `FLAKY_WORKER` tells it:
`<number>:<starts>` makes worker <number> meet an unexpected exception while
it makes its app, at its first <starts> starts (`*`: at every one); the
others serve as usual. The starts are counted in files under
`FLAKY_WORKER_DIR`. `FLAKY_WORKER_CTRL_C=<number>`: worker <number> sends
SIGINT to its process group as it starts, as Ctrl-C in a terminal does."""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path
from typing import Any

from ollama_gateway import serve


def worker_main(settings: Any, number: int, shared: Any, ready: ctypes.c_bool) -> None:
    if os.environ.get("FLAKY_WORKER_CTRL_C") == str(number):
        # Ctrl-C in a terminal while this worker still starts (its modules
        # are imported, its handlers not yet set): SIGINT to the whole group.
        os.killpg(0, signal.SIGINT)
    failing, starts = os.environ.get("FLAKY_WORKER", "0:0").split(":")
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
