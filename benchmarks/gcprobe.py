"""``python -m benchmarks.gcprobe ARGS``: ``python -m mailhaven ARGS`` that also counts
the garbage collector's work (``gc.callbacks``) and, on SIGUSR1, writes the totals so
far as one JSON line to the file named by ``MAILHAVEN_GC_PROBE``.  Used by
``benchmarks.idlebench --gc-probe``; the benchmark, not the server, owns this code."""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import time
from typing import Any

_totals = {"collections": [0, 0, 0], "seconds": [0.0, 0.0, 0.0], "collected": 0}
_started = [0.0]


def _on_collection(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    generation = info["generation"]
    _totals["collections"][generation] += 1
    _totals["seconds"][generation] += time.perf_counter() - _started[0]
    _totals["collected"] += info["collected"]


def _report(signum: int, frame: object) -> None:
    with open(os.environ["MAILHAVEN_GC_PROBE"], "a") as out:
        out.write(json.dumps(_totals) + "\n")


def main() -> None:
    gc.callbacks.append(_on_collection)
    signal.signal(signal.SIGUSR1, _report)
    from mailhaven.cli import main as mailhaven_main

    sys.exit(mailhaven_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
