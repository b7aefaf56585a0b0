"""The benchmark harness runs end to end with tiny counts and writes every figure (it measures nothing:
benchmarks are `make bench`, never part of `make test`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = (
    "start_local_s", "start_docker_s",                                                   # 1 start-up
    "repro_1011_wall_s", "determinism_race_1011", "determinism_fixed_complete",          # 2 repro
    "http_rps", "http_p50_ms", "http_p99_ms", "ws_run_p50_ms", "ws_run_p99_ms",          # 3 proxy path
    "ws_run_p50_ms_staging",
    "ws_capacity_clients", "api_memory_1000_mb",                                         # 4 capacity
    "fault_switch_cold_start_ms", "fault_switch_proxy_down_ms", "fault_switch_reset_ms",  # 5 fault switch
    "redirect_start_extra_ms", "tls_http_new_conn_ms", "tls_http_keepalive_ms", "tls_ws_connect_ms",  # 6 redirect
    "gateway_http_rps", "gateway_http_p50_ms", "gateway_http_p99_ms", "gateway_ws_rtt_p50_ms",     # 7 gateway
    "gateway_ws_clients", "gateway_memory_1000_mb",
    "report_1000_s", "report_1000_bytes",                                                # 8 HTML report
    "record_http_added_p50_ms", "replay_http_rps", "replay_http_p50_ms",                 # 9 record, replay
    "fault_rm_held_latency_s",                                                           # 10 fault rm (#558)
    "reap_idle_ms", "reap_orphans_ms",                                                   # 11 reap
)


def test_quick_bench_writes_every_figure(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_PROXY": "127.0.0.1,localhost,::1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    results = json.loads(out.read_text())
    assert set(results["figures"]) == set(FIGURES)
    for key, entry in results["figures"].items():
        assert {"median", "min", "max", "runs"} <= set(entry), key
        if not entry.get("skipped"):
            assert entry["runs"] >= 1 and entry["median"] is not None, key
    for key in ("http_rps", "ws_run_p50_ms", "start_local_s"):
        assert results["figures"][key]["ratio"] is not None, key
    assert results["figures"]["determinism_race_1011"]["details"]["of"] >= 1
    assert "| figure" in proc.stdout
