"""The one set of MySQL/MariaDB value converters both row decoders use (connectors/mysql/values)."""

from __future__ import annotations

import decimal
import uuid

from connectors.mysql import fastrows
from connectors.mysql.values import (
    T_NEWDECIMAL,
    T_STRING,
    ColumnHints,
    column_spec,
    decoder,
)


def test_mariadb_uuid_is_a_uuid_on_both_decoders() -> None:
    col = fastrows.FastColumn(type=T_STRING, name="uid", max_length=16, collation_name="binary")
    value = uuid.UUID("550e8400-e29b-41d4-a716-446655440000")
    stored = value.bytes.rstrip(b"\0")  # the binlog strips BINARY's trailing zero bytes
    spec = column_spec(col, ColumnHints(uuid=frozenset({"uid"})).kind("uid"))
    assert decoder(spec)(bytes([len(stored)]) + stored, 0) == (value, 1 + len(stored))
    # without the catalog's hint the column is the BINARY(16) the table map says
    plain = decoder(column_spec(col))(bytes([len(stored)]) + stored, 0)[0]
    assert plain == value.bytes


def test_library_decoder_runs_the_fast_converters() -> None:
    col = fastrows.FastColumn(type=T_NEWDECIMAL, precision=12, decimals=2)
    raw = bytes.fromhex("810dfb38d20c")  # 1 | 234567890 | 12, sign bit set: positive
    assert decoder(column_spec(col))(raw + b"rest", 0) == (decimal.Decimal("1234567890.12"), 6)
    negative = bytes(b ^ 0xFF for b in raw)
    assert decoder(column_spec(col))(negative, 0)[0] == decimal.Decimal("-1234567890.12")
