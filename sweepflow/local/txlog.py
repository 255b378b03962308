"""Read wandb's transaction log (``run-<id>.wandb``), including while the run is still writing it.

Why this exists: in offline mode a run's config, history and summary live *only* in this file (there
is no ``wandb-summary.json``), wandb 0.31 ships no Python reader for it (the writer is the Go
``wandb-core`` binary), and sweepflow's controller needs live metrics without W&B's cloud. So we parse
it ourselves, cheaply and incrementally.

Format, as written by wandb-core 0.31.0 (``tests/test_txlog.py`` reads real files with every checksum
verified and every byte consumed):

* A 7-byte file header: ``b":W&B"``, magic ``0xBEE1`` (uint16 little-endian), version ``0``.
* Then a LevelDB-style log cut into 32 KiB blocks; the file header sits at the start of block 0.
  Each chunk is ``crc: uint32 LE | length: uint16 LE | type: uint8`` plus ``length`` payload bytes.
  A payload that does not fit in the rest of a block is split into FIRST, MIDDLE..., LAST chunks;
  small ones are a single FULL chunk. A block tail shorter than a chunk header is zero padding.
* The checksum is *not* LevelDB's masked CRC-32C: it is plain, unmasked CRC-32 (IEEE, as in
  ``zlib.crc32``) over the type byte followed by the payload. Verifying it therefore costs only the
  stdlib, so it is on by default.
* Each reassembled payload is one serialized ``wandb.proto.wandb_internal_pb2.Record``.

A file being written ends at an arbitrary byte (wandb-core flushes a buffer, not whole records), so an
incomplete final chunk or header is "not written yet", never an error: the reader stops before it and
resumes from there on the next :meth:`TransactionLog.poll`.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError

if TYPE_CHECKING:
    from wandb.proto import wandb_internal_pb2 as pb

__all__ = [
    "BLOCK_SIZE",
    "FILE_HEADER",
    "RunLog",
    "TransactionLog",
    "TransactionLogError",
    "find_run_file",
]

FILE_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK_SIZE = 32 * 1024
_CHUNK_HEADER = struct.Struct("<IHB")
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_TYPE_CRC = {t: zlib.crc32(bytes([t])) for t in (_FULL, _FIRST, _MIDDLE, _LAST)}


class TransactionLogError(ValueError):
    """The bytes present are not a valid transaction log (as opposed to merely incomplete)."""


class TransactionLog:
    """Incremental reader of the raw ``Record`` protobufs in one ``.wandb`` file.

    It remembers :attr:`offset`, the byte just after the last complete record it returned, so each
    :meth:`poll` reads only bytes appended since (plus any record that was still incomplete), which
    keeps polling a live run every fraction of a second cheap.
    """

    def __init__(self, path: str | os.PathLike[str], *, verify_crc: bool = True) -> None:
        self.path = Path(path)
        self.verify_crc = verify_crc
        self.offset = 0

    def poll(self) -> list[pb.Record]:
        """Return the records completed since the last call; ``[]`` if none or the file is not there yet.

        Raises:
            TransactionLogError: on a bad file header, checksum, chunk sequence or protobuf, because
                those mean corruption, which waiting will not fix.
        """
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        records, consumed = self._parse(data)
        self.offset += consumed
        return records

    def _parse(self, data: bytes) -> tuple[list[pb.Record], int]:
        """Parse ``data`` (the file from :attr:`offset` on) into records and the bytes they used."""
        records: list[pb.Record] = []
        pos = consumed = 0
        if self.offset == 0:
            if len(data) < len(FILE_HEADER):
                return records, 0
            if data[: len(FILE_HEADER)] != FILE_HEADER:
                raise TransactionLogError(f"{self.path}: not a wandb transaction log (header {data[:7]!r})")
            pos = consumed = len(FILE_HEADER)
        fragments: list[bytes] = []
        while True:
            block_left = BLOCK_SIZE - (self.offset + pos) % BLOCK_SIZE
            if block_left < _CHUNK_HEADER.size:  # zero padding up to the next block
                pos += block_left
                continue
            if len(data) - pos < _CHUNK_HEADER.size:
                break
            crc, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
            where = self.offset + pos
            if kind not in _TYPE_CRC or length > block_left - _CHUNK_HEADER.size:
                raise TransactionLogError(f"{self.path}: bad chunk header at byte {where}")
            end = pos + _CHUNK_HEADER.size + length
            if end > len(data):
                break  # the writer has not got this far yet
            payload = data[pos + _CHUNK_HEADER.size : end]
            if self.verify_crc and zlib.crc32(payload, _TYPE_CRC[kind]) != crc:
                raise TransactionLogError(f"{self.path}: checksum mismatch at byte {where}")
            pos = end
            if (kind in (_FULL, _FIRST)) == bool(fragments):
                raise TransactionLogError(f"{self.path}: chunk type {kind} out of sequence at byte {where}")
            fragments.append(payload)
            if kind in (_FULL, _LAST):
                records.append(_decode_record(b"".join(fragments), self.path, where))
                fragments.clear()
                consumed = pos
        return records, consumed


@cache
def load_reader() -> type[pb.Record]:
    """wandb's record type, imported at the first read: importing it runs wandb's package (~0.6 s), which a
    controller standing by or a CLI command that reads no log should not pay at start-up."""
    from wandb.proto import wandb_internal_pb2

    return wandb_internal_pb2.Record


def _decode_record(payload: bytes, path: Path, where: int) -> pb.Record:
    """Deserialize one payload, turning protobuf's error into ours so callers catch a single type."""
    record = load_reader()()
    try:
        record.ParseFromString(payload)
    except DecodeError as exc:
        raise TransactionLogError(f"{path}: undecodable record (last chunk at byte {where})") from exc
    return record


class RunLog:
    """Parsed, incrementally updated view of one run: history rows, summary, config and exit status.

    Semantics follow what wandb-core writes rather than what users pass in:

    * ``history`` has one flat dict per committed ``wandb.log`` row, including ``_step``,
      ``_timestamp`` and ``_runtime``; a nested logged dict ``{"a": {"b": 1}}`` becomes key ``"a.b"``
      (as in W&B's UI and ``run.history()``).
    * ``summary`` and ``config`` are nested dicts built by replaying every update/remove record, since
      each record is a delta, not a snapshot. wandb-core stores config values as given (there is no
      ``{"value": v}`` wrapping in the log, so none is undone here); the internal ``_wandb`` key is
      dropped from ``config`` but kept in ``summary``.
    * ``exit_code`` is set by the exit record, which is the last record of a finished run: the code the run
      *recorded* (``run.finish(exit_code=...)``, 1 after an uncaught exception, 255 after Ctrl-C), which is
      what W&B's finished / failed comes from, not the process's exit code.
    * ``preempting`` is set once the run called ``run.mark_preempting()``.
    * ``finishing`` is set once wandb's finish has begun: it writes a telemetry record after the run's last
      history row, then the exit record (wandb 0.31). A run killed then still gets its exit record from
      wandb-core, a moment later.
    * ``summary["_runtime"]`` ends up 0: wandb 0.31 offline writes a ``{"_runtime": 0, "_wandb":
      {"runtime": 0}}`` summary update before every row and at finish. Use the rows' ``_runtime``.
    """

    def __init__(self, path: str | os.PathLike[str], *, verify_crc: bool = True) -> None:
        self._log = TransactionLog(path, verify_crc=verify_crc)
        self.run_id: str | None = None
        self.history: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {}
        self.config: dict[str, Any] = {}
        self.exit_code: int | None = None
        self.preempting = False
        self.finishing = False

    @classmethod
    def read(cls, path: str | os.PathLike[str], *, verify_crc: bool = True) -> RunLog:
        """Parse everything currently in the file, for one-shot use on a finished (or snapshot) run."""
        log = cls(path, verify_crc=verify_crc)
        log.poll()
        return log

    @property
    def path(self) -> Path:
        """The ``.wandb`` file being read."""
        return self._log.path

    @property
    def offset(self) -> int:
        """Bytes of the file consumed so far."""
        return self._log.offset

    @property
    def finished(self) -> bool:
        """Whether the run's exit record has been read; nothing is expected after it.

        A SIGKILLed run never writes one (its file just ends cleanly), so watch the process as well.
        """
        return self.exit_code is not None

    def poll(self) -> list[dict[str, Any]]:
        """Apply records written since the last call; return just the new history rows."""
        new_rows = []
        for record in self._log.poll():
            row = self.apply(record)
            if row is not None:
                new_rows.append(row)
        return new_rows

    def apply(self, record: pb.Record) -> dict[str, Any] | None:
        """Fold one record into this view; return the history row if it was one."""
        kind = record.WhichOneof("record_type")
        if kind == "telemetry" and self.history:
            self.finishing = True
        if kind == "history":
            self.finishing = False
            row = {".".join(_path(item)): _history_value(item) for item in record.history.item}
            row.setdefault("_step", record.history.step.num)
            self.history.append(row)
            return row
        if kind == "summary":
            _replay(self.summary, record.summary.update, record.summary.remove)
        elif kind == "config":
            _replay(self.config, record.config.update, record.config.remove)
            self.config.pop("_wandb", None)
        elif kind == "run":
            self.run_id = record.run.run_id
            _replay(self.config, record.run.config.update, record.run.config.remove)
            self.config.pop("_wandb", None)
            _replay(self.summary, record.run.summary.update, record.run.summary.remove)
        elif kind == "exit":
            self.exit_code = record.exit.exit_code
        elif kind == "preempting":
            self.preempting = True
        return None


def _path(item: pb.HistoryItem | pb.SummaryItem | pb.ConfigItem) -> list[str]:
    """Key path of an item: wandb-core writes ``nested_key`` for logged data and ``key`` elsewhere."""
    return [item.key] if item.key else list(item.nested_key)


def _json(text: str) -> Any:
    """Decode ``value_json`` (which may spell NaN/Infinity, as Python's json accepts); keep raw if bad."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _history_value(item: pb.HistoryItem) -> Any:
    """Value of a history item: ``value_json``, else the typed ``value`` oneof.

    wandb 0.31 always writes ``value_json`` (it rejects ``x_history_value_encoding="typed"`` alone), so
    the fallback only matters if a later version drops the JSON form.
    """
    if item.value_json:
        return _json(item.value_json)
    kind = item.WhichOneof("value")
    if kind is None or kind == "none":
        return None
    if kind == "json":
        return _json(item.json)
    return getattr(item, kind)


def _replay(
    target: dict[str, Any],
    updates: Iterable[pb.SummaryItem | pb.ConfigItem],
    removes: Iterable[pb.SummaryItem | pb.ConfigItem],
) -> None:
    """Apply summary/config ``update`` then ``remove`` items to a nested dict, in place."""
    for item in updates:
        *parents, leaf = _path(item)
        node = target
        for key in parents:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[leaf] = _json(item.value_json)
    for item in removes:
        *parents, leaf = _path(item)
        node: Any = target
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)


def find_run_file(wandb_dir: str | os.PathLike[str], run_id: str) -> Path | None:
    """Locate ``run-<id>.wandb`` under ``wandb_dir`` (what ``WANDB_DIR`` was set to), or ``None``.

    wandb puts runs in ``<WANDB_DIR>/wandb/`` (or ``.wandb/``) as ``offline-run-<time>-<id>`` or
    ``run-<time>-<id>``; if the id was reused, the newest directory (by its timestamped name) wins.
    """
    root = Path(wandb_dir)
    candidates = [
        path for sub in ("wandb", ".wandb") for path in (root / sub).glob(f"*run-*-{run_id}*/run-{run_id}.wandb")
    ]
    return max(candidates, key=lambda p: p.parent.name.removeprefix("offline-"), default=None)
