"""The benchmark suite behind `make bench` (`python -m tests.bench`).

Processes, all on 127.0.0.1 and each bounded in time and count:

- `backend`: a fake OpenAI backend on raw asyncio (uvloop when installed),
- the targets: the backend itself (direct), the gateway as a real process
  (`python -m ollama_gateway serve`) as installed by default (asyncio's loop:
  an installed uvloop is hidden from it), with `--workers 2`, with the
  `uvloop` extra, and `naive`, the 50-line reference translator,
- `client`: the load generator on raw asyncio sockets, one process per scenario,
- `__main__`: starts them, samples /proc for CPU and RSS, prints the table.

No file here is named `test_*.py`: `make test` never collects the benchmarks.
"""
