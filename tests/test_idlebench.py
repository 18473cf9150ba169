"""The repeated IDLE fan-out benchmark runs end to end against a started server (its
figures are not checked: timings stay out of the tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mailhaven import runtime


def test_idlebench_measures_every_append_with_the_gc_probe(tmp_path: Path) -> None:
    out = tmp_path / "idle.json"
    command = [sys.executable, "-m", "benchmarks.idlebench", "--idlers", "5", "--appends", "2"]
    command += ["--gap", "0.1", "--gc-probe", "--json", str(out)]
    repository = Path(__file__).resolve().parent.parent
    subprocess.run(command, check=True, capture_output=True, timeout=120, cwd=repository)
    result = json.loads(out.read_text())
    assert result["idlers"] == 5
    assert len(result["rounds"]) == 2
    for figures in result["rounds"]:
        assert {"p50_ms", "p99_ms", "min_ms", "server_cpu_ms", "gc_ms", "gc_full"} <= figures.keys()
        assert figures["min_ms"] <= figures["p50_ms"] <= figures["p99_ms"]
    assert "memory_per_idler_kib" in result["median"]


@pytest.mark.skipif(not runtime.uvloop_available(), reason="uvloop is not installed")
def test_idlebench_runs_its_client_on_uvloop(tmp_path: Path) -> None:
    out = tmp_path / "idle.json"
    command = [sys.executable, "-m", "benchmarks.idlebench", "--idlers", "3", "--appends", "2"]
    command += ["--gap", "0.1", "--client-loop", "uvloop", "--json", str(out)]
    repository = Path(__file__).resolve().parent.parent
    subprocess.run(command, check=True, capture_output=True, timeout=120, cwd=repository)
    result = json.loads(out.read_text())
    assert len(result["rounds"]) == 2
    assert all(r["min_ms"] <= r["p99_ms"] <= r["max_ms"] for r in result["rounds"])
