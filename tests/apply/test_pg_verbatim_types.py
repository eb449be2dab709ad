"""PostgreSQL -> PostgreSQL keeps the source's own type for the kinds no other engine has
(docs/apply.md, type mapping: "same engine: verbatim"): inet, cidr, macaddr, macaddr8,
tsvector, tsquery, pg_lsn and the range types. Snapshot, streaming (inserts, updates,
deletes, keyless rows found by their full image) and verify; the CLI runs in a subprocess
and the oracle compares the rows of both sides read through psycopg.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from connectors.endpoint import Endpoint

pytestmark = pytest.mark.postgres

_COLUMNS = (
    "ip inet, net cidr, mac macaddr, mac8 macaddr8, doc tsvector, q tsquery, lsn pg_lsn, "
    "r int4range, tr tstzrange, dr daterange"
)
_ROW = (
    "%s, '192.168.0.{n}/24', '10.{n}.0.0/16', '08:00:2b:01:02:{n:02x}', "
    "'08:00:2b:01:02:03:04:{n:02x}', 'a fat cat sat on a mat {n}', 'fat & (rat | cat)', "
    "'16/B374D{n:02X}', '[{n},{m})', '[2026-01-01 00:00+00,2026-02-0{d} 12:00+00)', "
    "'[2026-01-01,2026-03-0{d})'"
)


def _connect(ep: Endpoint) -> psycopg.Connection[Any]:
    return psycopg.connect(
        f"host={ep.host} port={ep.port} user=postgres dbname={ep.database}", autocommit=True
    )


def _insert(conn: psycopg.Connection[Any], table: str, ids: range) -> None:
    for n in ids:
        values = _ROW.format(n=n % 250, m=n % 250 + 5, d=n % 8 + 1)
        conn.execute(f"INSERT INTO {table} VALUES ({values})", (n,))


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDOLINE_")}
    env["NO_COLOR"] = "1"
    return subprocess.run(
        [sys.executable, "-c", "from toolkit_cli.app import main; main()", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _rows(ep: Endpoint, table: str) -> Counter[tuple[Any, ...]]:
    with _connect(ep) as conn:
        # text as the server prints it: the same type on both sides prints the same
        cols = conn.execute(
            "SELECT string_agg(quote_ident(attname) || '::text', ', ' ORDER BY attnum) "
            "FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "AND NOT attisdropped",
            (f"public.{table}",),
        ).fetchone()
        assert cols is not None
        return Counter(tuple(r) for r in conn.execute(f"SELECT {cols[0]} FROM public.{table}"))


def _types(ep: Endpoint, table: str) -> list[str]:
    with _connect(ep) as conn:
        return [
            str(r[0])
            for r in conn.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                "%s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                (f"public.{table}",),
            )
        ]


def test_pg_to_pg_keeps_builtin_types(pg_db: Endpoint, tmp_path: Path) -> None:
    src = pg_db
    dst_name = f"{src.database}_dst"
    admin = f"host={src.host} port={src.port} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dst_name}"')
    dst = Endpoint.parse(f"postgresql://postgres@{src.host}:{src.port}/{dst_name}")
    try:
        with _connect(src) as conn:
            conn.execute(f"CREATE TABLE net (id int PRIMARY KEY, {_COLUMNS})")
            conn.execute(f"CREATE TABLE netk (id int, {_COLUMNS})")
            conn.execute("ALTER TABLE netk REPLICA IDENTITY FULL")
            _insert(conn, "net", range(1, 301))
            _insert(conn, "netk", range(1, 41))
            _insert(conn, "netk", range(1, 11))  # duplicates of keyless rows
            conn.execute("INSERT INTO net (id) VALUES (0)")  # NULLs
        common = ["--source", src.url(), "--target", dst.url(), "--trail", str(tmp_path / "t")]
        common += ["--tables", "public.*"]
        first = _run(tmp_path, "sync", *common, "--until-caught-up", "--chunk-rows", "100")
        assert first.returncode == 0, first.stdout + first.stderr
        with _connect(src) as conn:
            _insert(conn, "net", range(301, 351))
            _insert(conn, "netk", range(41, 51))
            conn.execute(
                "UPDATE net SET ip = '::1', doc = 'new words here', r = 'empty', "
                "tr = '(,)', mac = NULL WHERE id % 7 = 0"
            )
            conn.execute("DELETE FROM net WHERE id % 11 = 0")
            conn.execute(
                "DELETE FROM netk WHERE ctid IN (SELECT ctid FROM netk WHERE id = 3 LIMIT 1)"
            )
            conn.execute("UPDATE netk SET ip = '2001:db8::/32', q = 'x:*' WHERE id = 5")
        second = _run(tmp_path, "sync", *common, "--until-caught-up")
        assert second.returncode == 0, second.stdout + second.stderr
        for table in ("net", "netk"):
            assert _types(dst, table) == _types(src, table)
            assert _rows(dst, table) == _rows(src, table), table
        verify = _run(
            tmp_path, "verify", "--source", src.url(), "--target", dst.url(), "--tables", "public.*"
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
        with _connect(dst) as conn:
            conn.execute("UPDATE net SET ip = '10.9.9.9' WHERE id = 1")
        differs = _run(
            tmp_path, "verify", "--source", src.url(), "--target", dst.url(), "--tables", "public.*"
        )
        assert differs.returncode == 1, differs.stdout + differs.stderr
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dst_name}" WITH (FORCE)')
