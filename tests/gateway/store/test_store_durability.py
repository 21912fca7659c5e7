"""Durability: every write the store acknowledged survives the process being killed with SIGKILL mid-burst."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bastion.gateway.store import PredictionRecord, Store

CLIENT = "0123456789ab"
KILL_AFTER = 40  # acknowledged writes read before the kill; the writer would go on to 100000

# Writes feedback until killed, printing each id only after add_feedback returned.
WRITER = """
import sys
from bastion.gateway.store import Store
store = Store.open(sys.argv[1])
print("ready", flush=True)
for _ in range(100_000):
    print(store.add_feedback(client=sys.argv[2], prediction_id="p0", correct=True, label=None), flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_acknowledged_feedback_survives_sigkill(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    with Store.open(url) as store:
        store.record_prediction(PredictionRecord("p0", datetime.now(UTC), CLIENT, 1, (0.0, 1.0), "ab" * 32))
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, url, CLIENT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    try:
        assert process.stdout.readline() == "ready\n", process.stderr.read() if process.stderr else ""
        acknowledged = [process.stdout.readline() for _ in range(KILL_AFTER)]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        acknowledged += process.stdout.readlines()  # printed before the kill, read after it
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL  # killed mid-burst, not finished
    ids = [line.strip() for line in acknowledged if line.endswith("\n")]  # a torn last line was never acknowledged
    assert len(ids) >= KILL_AFTER
    with Store.open(url) as reopened:
        stored = {f.feedback_id for f in reopened.list_feedback(client=CLIENT, limit=10_000)}
    missing = [i for i in ids if i not in stored]
    assert missing == []
