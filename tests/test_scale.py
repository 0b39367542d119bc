"""Scale-out on a real Ray: an audit on two local workers writes the serial audit's results, and a
scan joins a Ray head started here with ``ray start --head`` on 127.0.0.1 (only the processes
this test started are stopped)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import cli
from provenance.keys import WatermarkKey

RAY = str(Path(sys.executable).with_name("ray"))
ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path):
    """A Ray head on 127.0.0.1 with token authentication (a token of its own, which the scan process
    is given to join), in its own process group and temp folder, stopped by signalling that group
    only: other Ray processes on the machine are left alone. Yields the head, its address and the
    environment that joins it (this test process's own Ray state is never touched)."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    token = tmp_path / "ray-token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    environment = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=environment)
    try:
        deadline = time.monotonic() + 120
        while not listening(port):
            assert head.poll() is None and time.monotonic() < deadline, "the Ray head did not come up"
            time.sleep(1)
        yield head, f"127.0.0.1:{port}", environment
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


def test_a_scan_joins_an_existing_ray_cluster_by_address(ray_head, tmp_path, human_passages):
    head, address, environment = ray_head
    key = tmp_path / "key.json"
    WatermarkKey.from_seed("scale").save(key)
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in human_passages[:6]))
    out = tmp_path / "scan"
    joined = subprocess.run([sys.executable, str(ROOT / "cli.py"), "scan", "--scheme", "kgw", "--key", str(key),
                             "--workers", "2", "--batch", "3", "--address", address, "--out", str(out), str(texts)],
                            env=environment, capture_output=True, text=True, timeout=600)
    assert joined.returncode == 0, joined.stderr[-2000:]
    local = run("scan", "--scheme", "kgw", "--key", key, "--workers", 0, "--out", tmp_path / "serial", texts)
    assert local.exit_code == 0, local.output
    rows, serial = (sorted(pq.read_table(o / "results.parquet").to_pylist(), key=lambda r: r["item"])
                    for o in (out, tmp_path / "serial"))
    assert len(rows) == 6 and rows == serial
    assert head.poll() is None  # the cluster joined is left running


@pytest.mark.slow
def test_an_audit_on_two_ray_workers_writes_the_serial_audits_results(tmp_path):
    """KGW and EXP on SmolLM2, two texts a cell, under token deletion: the same cell records (all but
    the wall-clock ``seconds``) from two Ray actors as from the serial loop."""
    key = tmp_path / "key.json"
    WatermarkKey.from_seed("scale-audit").save(key)
    args = ["audit", "--modality", "text", "--schemes", "kgw,exp", "--attacks", "token-deletion",
            "--strengths", "0.5", "--n", 2, "--tokens", 16, "--key", key]
    serial = run(*args, "--out", tmp_path / "serial")
    spread = run(*args, "--workers", 2, "--out", tmp_path / "ray")
    assert serial.exit_code == 0 and spread.exit_code == 0, (serial.output, spread.output)

    def cells(folder):
        return [{k: v for k, v in cell.items() if k != "seconds"}
                for cell in json.loads((folder / "results.json").read_text())["cells"]]

    assert cells(tmp_path / "ray") == cells(tmp_path / "serial")
    assert len(cells(tmp_path / "ray")) == 4
