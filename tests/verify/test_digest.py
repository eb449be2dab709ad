"""The first pass's chunk digests: a digest the engine could not build never passes as equal."""

from __future__ import annotations

import pytest

from connectors.endpoint import Endpoint
from connectors.mysql import checksum as mysql_checksum
from tests.verify.conftest import execute, qualified, table, verify
from verify import TablePair


def _load(ep: Endpoint, name: str, changed: int | None) -> None:
    execute(
        ep,
        [f"CREATE TABLE {qualified(ep, name)} (id BIGINT PRIMARY KEY, v VARCHAR(40))"],
        [(i, "changed" if i == changed else f"value {i}") for i in range(1, 401)],
        f"INSERT INTO {qualified(ep, name)} (id, v) VALUES (%s, %s)",
    )


def test_truncated_group_concat_is_not_trusted(
    mysql_db: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    # both sides on MariaDB cut their texts at the same length: equal digests of the cut
    # texts must not hide the row that differs after the cut
    monkeypatch.setattr(mysql_checksum, "_CONCAT_LIMIT", 64)
    _load(mysql_db, "a", None)
    _load(mysql_db, "b", 399)
    pair = TablePair(table(mysql_db, "a"), table(mysql_db, "b"))
    result = verify(mysql_db, mysql_db, [], pairs=[pair], chunk_rows=100, leaf_rows=8)
    (t,) = result.tables
    assert t.error is None
    assert t.mismatched_chunks == t.chunks
    assert [(d.kind, d.key, d.columns) for d in t.diffs] == [("different", {"id": 399}, ["v"])]


def test_digest_path_on_rows_stored_out_of_key_order(mysql_db: Endpoint, pg_db: Endpoint) -> None:
    # updated PostgreSQL rows move to the end of the heap; the chunks still compare equal
    _load(mysql_db, "c", None)
    _load(pg_db, "c", 7)
    execute(pg_db, [f"UPDATE {qualified(pg_db, 'c')} SET v = 'value 7' WHERE id = 7"])
    result = verify(mysql_db, pg_db, ["c"], chunk_rows=100, leaf_rows=8)
    (t,) = result.tables
    assert t.error is None and t.mode == "range"
    assert t.mismatched_chunks == 0 and not t.diffs
    assert (t.source_rows, t.target_rows) == (400, 400)
