"""What a verify run finds: per-table results and row differences, and their JSON form.

The JSON form is the machine report (``--report-json``) and the input of
``redoline repair --from-report``; values are encoded by column kind so they decode back to
the same Python values (:func:`encode_value` / :func:`decode_value`).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from connectors.model import Column, Interval, Json, TableId

__all__ = [
    "FORMAT_VERSION",
    "RowDiff",
    "TableResult",
    "VerifyResult",
    "decode_value",
    "encode_value",
]

FORMAT_VERSION = 1

MISSING = "missing"  # in the source, not in the target
EXTRA = "extra"  # in the target, not in the source
DIFFERENT = "different"  # same key, other values


@dataclass
class RowDiff:
    """One row that differs. Keyless tables: ``count`` copies of the same row."""

    kind: str
    #: the key's values (keyless tables: None); source values unless the row is extra
    key: dict[str, Any] | None
    #: the row in the source and in the target (None where it does not exist)
    source: dict[str, Any] | None
    target: dict[str, Any] | None
    #: columns whose canonical values differ (``different`` only)
    columns: list[str] = field(default_factory=list)
    count: int = 1
    #: 16 hex digits of MD5 over the row's canonical text on the side that has it
    row_hash: str = ""


@dataclass
class TableResult:
    """The comparison of one source table with its target table."""

    source_table: TableId
    target_table: TableId
    #: ``range`` (integer key ranges), ``hash`` (key-hash buckets) or ``keyless``
    mode: str = ""
    key: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    where: str | None = None
    source_rows: int = 0
    target_rows: int = 0
    chunks: int = 0
    mismatched_chunks: int = 0
    diffs: list[RowDiff] = field(default_factory=list)
    #: --max-diffs was reached: more differences may exist than listed
    truncated: bool = False
    #: differences of the first pass that were gone at the re-check
    transient: int = 0
    rechecked: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    #: source-side column definitions (to decode saved values and write repair SQL)
    source_columns: tuple[Column, ...] = ()
    target_columns: tuple[Column, ...] = ()
    #: differences of definition the rows cannot show (a column only the target has)
    schema_diffs: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        out = {MISSING: 0, EXTRA: 0, DIFFERENT: 0}
        for diff in self.diffs:
            out[diff.kind] += diff.count
        return out

    @property
    def equal(self) -> bool:
        return (
            not self.diffs and not self.schema_diffs and not self.truncated and self.error is None
        )

    def to_json(self) -> dict[str, Any]:
        kinds = {c.name: c.kind for c in self.source_columns}
        tkinds = {c.name: c.kind for c in self.target_columns}
        return {
            "source_table": str(self.source_table),
            "target_table": str(self.target_table),
            "mode": self.mode,
            "key": list(self.key),
            "columns": list(self.columns),
            "where": self.where,
            "source_rows": self.source_rows,
            "target_rows": self.target_rows,
            "chunks": self.chunks,
            "mismatched_chunks": self.mismatched_chunks,
            "equal": self.equal,
            "counts": self.counts,
            "truncated": self.truncated,
            "transient": self.transient,
            "rechecked": self.rechecked,
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
            "error": self.error,
            "schema_diffs": list(self.schema_diffs),
            "source_columns": [asdict(c) for c in self.source_columns],
            "target_columns": [asdict(c) for c in self.target_columns],
            "diffs": [
                {
                    "kind": d.kind,
                    "key": _encode_row(d.key, kinds),
                    "columns": d.columns,
                    "count": d.count,
                    "row_hash": d.row_hash,
                    "source": _encode_row(d.source, kinds),
                    "target": _encode_row(d.target, tkinds),
                }
                for d in self.diffs
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TableResult:
        scols = tuple(_column(c) for c in data.get("source_columns", []))
        tcols = tuple(_column(c) for c in data.get("target_columns", []))
        kinds = {c.name: c.kind for c in scols}
        tkinds = {c.name: c.kind for c in tcols}
        result = cls(
            source_table=TableId.parse(data["source_table"]),
            target_table=TableId.parse(data["target_table"]),
            mode=data.get("mode", ""),
            key=tuple(data.get("key", ())),
            columns=tuple(data.get("columns", ())),
            where=data.get("where"),
            source_rows=int(data.get("source_rows", 0)),
            target_rows=int(data.get("target_rows", 0)),
            chunks=int(data.get("chunks", 0)),
            mismatched_chunks=int(data.get("mismatched_chunks", 0)),
            truncated=bool(data.get("truncated", False)),
            transient=int(data.get("transient", 0)),
            rechecked=bool(data.get("rechecked", False)),
            seconds=dict(data.get("seconds", {})),
            error=data.get("error"),
            schema_diffs=list(data.get("schema_diffs", [])),
            source_columns=scols,
            target_columns=tcols,
        )
        for d in data.get("diffs", []):
            result.diffs.append(
                RowDiff(
                    kind=d["kind"],
                    key=_decode_row(d.get("key"), kinds),
                    source=_decode_row(d.get("source"), kinds),
                    target=_decode_row(d.get("target"), tkinds),
                    columns=list(d.get("columns", [])),
                    count=int(d.get("count", 1)),
                    row_hash=d.get("row_hash", ""),
                )
            )
        return result


@dataclass
class VerifyResult:
    """A whole verify run."""

    source: str
    target: str
    started: dt.datetime
    tables: list[TableResult] = field(default_factory=list)
    seconds: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def equal(self) -> bool:
        return all(t.equal for t in self.tables)

    @property
    def errors(self) -> list[TableResult]:
        return [t for t in self.tables if t.error is not None]

    @property
    def totals(self) -> dict[str, int]:
        out = {MISSING: 0, EXTRA: 0, DIFFERENT: 0, "transient": 0}
        for table in self.tables:
            for kind, n in table.counts.items():
                out[kind] += n
            out["transient"] += table.transient
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "tool": "redoline verify",
            "source": self.source,
            "target": self.target,
            "started": self.started.isoformat(),
            "seconds": round(self.seconds, 4),
            "equal": self.equal,
            "totals": self.totals,
            "options": self.options,
            "tables": [t.to_json() for t in self.tables],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VerifyResult:
        return cls(
            source=data["source"],
            target=data["target"],
            started=dt.datetime.fromisoformat(data["started"]),
            tables=[TableResult.from_json(t) for t in data.get("tables", [])],
            seconds=float(data.get("seconds", 0.0)),
            options=dict(data.get("options", {})),
        )


# --------------------------------------------------------------------------- values


def encode_value(value: Any) -> Any:
    """A JSON value that :func:`decode_value` turns back into ``value`` given its kind."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return {"float": repr(value)}
        return value
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"hex": bytes(value).hex()}
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return {"us": (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds}
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Json):
        return {"json": value.text}
    if isinstance(value, Interval):
        return {"interval": [value.months, value.days, value.microseconds]}
    if isinstance(value, frozenset | set):
        return {"set": sorted(value)}
    if isinstance(value, list):
        return [encode_value(v) for v in value]
    if isinstance(value, dict):
        return {"json": __import__("json").dumps(value)}
    return {"text": base64.b64encode(str(value).encode()).decode()}


def decode_value(value: Any, kind: str) -> Any:
    """The Python value :func:`encode_value` encoded, for a column of ``kind``."""
    if value is None:
        return None
    if isinstance(value, dict):
        if "hex" in value:
            return bytes.fromhex(value["hex"])
        if "float" in value:
            return float(value["float"])
        if "us" in value:
            return dt.timedelta(microseconds=value["us"])
        if "json" in value:
            return Json(value["json"])
        if "interval" in value:
            return Interval(*value["interval"])
        if "set" in value:
            return frozenset(value["set"])
        if "text" in value:
            return base64.b64decode(value["text"]).decode()
    if isinstance(value, list):
        return [decode_value(v, "other") for v in value]
    if kind == "decimal" and isinstance(value, str):
        return decimal.Decimal(value)
    if kind in ("datetime", "timestamptz") and isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    if kind == "date" and isinstance(value, str):
        return dt.date.fromisoformat(value)
    if kind == "time" and isinstance(value, str):
        return dt.time.fromisoformat(value)
    if kind == "uuid" and isinstance(value, str):
        return uuid.UUID(value)
    return value


def _encode_row(row: dict[str, Any] | None, kinds: dict[str, str]) -> dict[str, Any] | None:
    if row is None:
        return None
    return {k: encode_value(v) for k, v in row.items()}


def _decode_row(row: dict[str, Any] | None, kinds: dict[str, str]) -> dict[str, Any] | None:
    if row is None:
        return None
    return {k: decode_value(v, kinds.get(k, "other")) for k, v in row.items()}


def _column(data: dict[str, Any]) -> Column:
    data = dict(data)
    data["labels"] = tuple(data.get("labels", ()))
    return Column(**data)
