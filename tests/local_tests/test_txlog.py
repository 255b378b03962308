"""Tests for ``sweepflow.local.txlog`` on real transaction logs written by wandb 0.31 in offline mode.

Each real run is ``examples/train_digits.py`` in a subprocess (about 4 s each, three in total), because
the point is to pin down what wandb-core actually writes, not what we think it writes.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits
from wandb.proto import wandb_internal_pb2 as pb

from sweepflow.local.txlog import BLOCK_SIZE, FILE_HEADER, RunLog, TransactionLog, TransactionLogError, find_run_file

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "examples" / "train_digits.py"
FLUSH_INTERVAL_S = 1.0


def _env(wandb_dir: Path, run_id: str, **extra: str) -> dict[str, str]:
    """Environment for an isolated offline run: the developer's own WANDB_*/SWEEPFLOW_* must not leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "SWEEPFLOW_"))}
    env.update(
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_DIR=str(wandb_dir),
        WANDB_RUN_ID=run_id,
        WANDB_PROJECT="test",
        WANDB__TRANSACTION_LOG_FLUSH_INTERVAL=str(FLUSH_INTERVAL_S),
        XDG_CACHE_HOME=str(wandb_dir / "cache"),  # wandb-core's debug log goes here, not into ~/.cache
        **extra,
    )
    return env


def _train(wandb_dir: Path, run_id: str, *args: str, **env: str) -> RunLog:
    """Run the example script to completion and parse its transaction log."""
    subprocess.run([sys.executable, str(SCRIPT), *args], env=_env(wandb_dir, run_id, **env), check=True, timeout=120)
    path = find_run_file(wandb_dir, run_id)
    assert path is not None, f"no run-{run_id}.wandb under {wandb_dir}"
    return RunLog.read(path)


@pytest.fixture(scope="module")
def swept_run(tmp_path_factory: pytest.TempPathFactory) -> RunLog:
    """A 5-epoch run whose epochs/hidden come from a sweep parameter file, as a W&B agent provides them."""
    wandb_dir = tmp_path_factory.mktemp("swept")
    params = wandb_dir / "sweep-params.json"
    params.write_text(json.dumps({"epochs": {"value": 5}, "hidden": {"value": 16}}))
    return _train(wandb_dir, "swept01", WANDB_SWEEP_PARAM_PATH=str(params))


def test_history_config_summary_and_exit(swept_run: RunLog) -> None:
    log = swept_run
    assert log.finished and log.exit_code == 0
    assert log.offset == log.path.stat().st_size
    assert log.run_id == "swept01"
    assert [row["epoch"] for row in log.history] == [1, 2, 3, 4, 5]
    assert [row["_step"] for row in log.history] == [0, 1, 2, 3, 4]
    val_loss = [row["val_loss"] for row in log.history]
    assert all(later <= earlier for earlier, later in pairwise(val_loss))
    assert all(0.0 <= row["val_acc"] <= 1.0 and row["train_loss"] > 0 for row in log.history)
    assert log.config["epochs"] == 5 and log.config["hidden"] == 16  # the sweep file won over defaults
    assert log.config["activation"] == "relu" and "_wandb" not in log.config
    assert 0.0 < log.summary["final_val_acc"] <= 1.0
    assert log.summary["final_val_acc"] == log.history[-1]["val_acc"]
    assert log.summary["val_loss"] == val_loss[-1]


def test_cli_flags_and_data_dir(tmp_path: Path) -> None:
    """``--epochs=3`` (as an agent's ``${args}``) works, and ``SWEEPFLOW_DATA_DIR/digits.npz`` is used."""
    features, labels = load_digits(return_X_y=True)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    # 8 validation samples: every accuracy is then a multiple of 1/8, which load_digits' 450 would not give.
    np.savez(
        data_dir / "digits.npz",
        X_train=features[:400] / 16.0,
        y_train=labels[:400],
        X_val=features[400:408] / 16.0,
        y_val=labels[400:408],
    )
    log = _train(tmp_path, "cli01", "--epochs=3", "--unknown-flag=1", SWEEPFLOW_DATA_DIR=str(data_dir))
    assert log.exit_code == 0
    assert log.config["epochs"] == 3 and log.config["hidden"] == 32
    assert [row["epoch"] for row in log.history] == [1, 2, 3]
    assert all((row["val_acc"] * 8).is_integer() for row in log.history)


@dataclass
class LiveRun:
    """What a controller polling a running training script saw."""

    path: Path
    polled_rows: list[dict[str, Any]]
    partial_polls: int  # polls before exit that returned some, but not all, rows
    lags_s: list[float]  # poll time minus each row's _timestamp


@pytest.fixture(scope="module")
def live_run(tmp_path_factory: pytest.TempPathFactory) -> LiveRun:
    """Poll a 200-epoch run (~3.5 s of training, ~95 KiB of log: three 32 KiB blocks) while it runs."""
    wandb_dir = tmp_path_factory.mktemp("live")
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--epochs=200"], env=_env(wandb_dir, "live01"))
    log: RunLog | None = None
    polled_rows: list[dict[str, Any]] = []
    lags_s: list[float] = []
    partial_polls = 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            exited = proc.poll() is not None  # checked before reading, so rows seen now predate exit
            if log is None and (path := find_run_file(wandb_dir, "live01")) is not None:
                log = RunLog(path)
            if log is not None:
                rows = log.poll()
                now = time.time()
                polled_rows += rows
                lags_s += [now - row["_timestamp"] for row in rows]
                partial_polls += bool(rows and not exited and len(polled_rows) < 200)
            if exited:
                break
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0 and log is not None and log.finished
    return LiveRun(log.path, polled_rows, partial_polls, lags_s)


def test_poll_sees_rows_while_the_run_is_live(live_run: LiveRun) -> None:
    assert live_run.partial_polls >= 1
    full = RunLog.read(live_run.path).history
    assert len(full) == 200
    assert live_run.polled_rows == full
    # Rows surface once wandb-core flushes, i.e. within about one flush interval of the log call.
    assert max(live_run.lags_s) < FLUSH_INTERVAL_S + 2.0, sorted(live_run.lags_s)[-5:]


def test_finishing_shows_between_the_last_row_and_the_exit_record(live_run: LiveRun) -> None:
    """A run killed in wandb's finish still gets its exit record (from wandb-core, a moment later): the reaper
    waits for it when the log shows the finish began, instead of re-running a run that completed."""
    log = RunLog(live_run.path)
    seen = []
    for record in TransactionLog(live_run.path).poll():
        log.apply(record)
        seen.append((record.WhichOneof("record_type"), log.finishing))
    last_row = max(i for i, (kind, _) in enumerate(seen) if kind == "history")
    assert not any(finishing for _, finishing in seen[: last_row + 1])  # never while rows still come
    assert seen[-1] == ("exit", True) and seen[last_row + 1][1], seen[last_row:]


def test_truncated_file_yields_a_prefix_of_the_history(live_run: LiveRun, tmp_path: Path) -> None:
    data = live_run.path.read_bytes()
    assert len(data) > 2 * BLOCK_SIZE  # so the cuts also land around block boundaries
    full = RunLog.read(live_run.path)
    cut_file = tmp_path / "cut.wandb"
    for cut in [*range(0, len(data), 997), len(data) - 1]:
        cut_file.write_bytes(data[:cut])
        log = RunLog.read(cut_file)
        assert log.history == full.history[: len(log.history)], cut
        assert not log.finished, cut
    # Same bytes arriving piecemeal into one file: polls resume mid-record and lose nothing.
    growing = tmp_path / "growing.wandb"
    growing.write_bytes(b"")
    log = RunLog(growing)
    rows: list[dict[str, Any]] = []
    for start in range(0, len(data), 997):
        with growing.open("ab") as fh:
            fh.write(data[start : start + 997])
        rows += log.poll()
    assert rows == full.history
    assert log.summary == full.summary and log.config == full.config and log.exit_code == 0


def _frame(payloads: list[bytes]) -> bytes:
    """Frame payloads as wandb-core does (as established by the real-file tests above)."""
    out = bytearray(FILE_HEADER)
    for payload in payloads:
        first = True
        while first or payload:
            left = BLOCK_SIZE - len(out) % BLOCK_SIZE
            if left < 7:
                out += bytes(left)
                continue
            chunk, payload = payload[: left - 7], payload[left - 7 :]
            kind = (1 if first else 4) if not payload else (2 if first else 3)
            crc = zlib.crc32(chunk, zlib.crc32(bytes([kind])))
            out += struct.pack("<IHB", crc, len(chunk), kind) + chunk
            first = False
    return bytes(out)


def test_record_spanning_three_blocks_and_corruption(tmp_path: Path) -> None:
    """Cases real runs of the example rarely produce: a MIDDLE chunk, and damaged bytes."""
    big = pb.Record()
    big.history.item.add(key="blob", value_json=json.dumps("x" * 70_000))
    big.history.item.add(key="_step", value_json="0")
    done = pb.Record()
    done.exit.exit_code = 3
    data = _frame([big.SerializeToString(), done.SerializeToString()])
    path = tmp_path / "run-synthetic.wandb"
    path.write_bytes(data)
    log = RunLog.read(path)
    assert log.history == [{"blob": "x" * 70_000, "_step": 0}] and log.exit_code == 3

    corrupt = bytearray(data)
    corrupt[BLOCK_SIZE + 100] ^= 0x01  # "x" -> "y" inside the MIDDLE chunk's payload
    path.write_bytes(bytes(corrupt))
    with pytest.raises(TransactionLogError, match="checksum"):
        TransactionLog(path).poll()
    unchecked = RunLog.read(path, verify_crc=False)  # protobuf alone would not notice the damage
    assert unchecked.history[0]["blob"].count("y") == 1

    path.write_bytes(b"not a wandb file")
    with pytest.raises(TransactionLogError, match="header"):
        TransactionLog(path).poll()
    assert TransactionLog(tmp_path / "absent.wandb").poll() == []
