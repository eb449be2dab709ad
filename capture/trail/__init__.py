"""The change trail: numbered, checksummed, optionally encrypted segments of transactions.

Writers append committed transactions (:class:`TrailWriter`); readers get them back in
operation order with every continuity and integrity rule checked (:class:`TrailReader`).
The byte layout is documented in docs/trail-format.md.

Typical use::

    with TrailWriter(Path("trail"), source_id="shop-db") as writer:
        writer.append(txn)          # numbered: txn.first_op = writer.last_op + 1
        writer.flush()              # durable from here on

    reader = TrailReader(Path("trail"))
    for txn in reader.transactions(start_op=1):
        schema = reader.schema(txn.changes[0].table, txn.changes[0].schema_version)
"""

from __future__ import annotations

from capture.trail._format import list_segment_files, open_name, sealed_name
from capture.trail._marks import MARKS_DIR, Mark, list_marks, read_mark, remove_mark, write_mark
from capture.trail._meta import (
    KEY_ENV_DEFAULT,
    CheckReport,
    check_trail,
    consumers,
    load_key,
    register_consumer,
    remove_consumer,
)
from capture.trail._reader import SegmentInfo, TrailInfo, TrailReader, trail_info
from capture.trail._start import START_FILE, TrailStart, fix_trail_start, read_trail_start
from capture.trail._writer import TrailWriter

__all__ = [
    "KEY_ENV_DEFAULT",
    "MARKS_DIR",
    "START_FILE",
    "CheckReport",
    "Mark",
    "SegmentInfo",
    "TrailInfo",
    "TrailReader",
    "TrailStart",
    "TrailWriter",
    "check_trail",
    "consumers",
    "fix_trail_start",
    "list_marks",
    "list_segment_files",
    "load_key",
    "open_name",
    "read_mark",
    "read_trail_start",
    "register_consumer",
    "remove_consumer",
    "remove_mark",
    "sealed_name",
    "trail_info",
    "write_mark",
]
