"""Character sets: latin1 / utf8mb3 / utf8mb4 MariaDB sources, and MariaDB targets whose
server or database default is latin1 (a stock MariaDB's default).

MariaDB's latin1 is Windows-1252 (0x80 is €) with the five bytes cp1252 leaves undefined
mapped to U+0081, U+008D, U+008F, U+0090 and U+009D; every one of them must arrive as the
source's driver reads it, on the snapshot, streaming and repair paths into every target.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from capture.runner import run_capture
from connectors import devservers
from connectors.errors import SchemaError
from connectors.model import TableId
from tests.apply.replicate import (
    PATHS,
    TARGETS,
    Pair,
    finish_stream,
    make_pair,  # noqa: F401  (fixture)
    mysql_exec,
    mysql_insert,
    pg_exec,
    repair,
    rows_of,
    snapshot,
    start_stream,
)

_UNDEFINED = "\x81\x8d\x8f\x90\x9d"
LATIN1_TEXT = [
    "",
    "é ß ¤ € Š ‰ ÿ",
    "tab\there\nline\r\\back 'q' \"dq\"  ",
    _UNDEFINED,
    # every byte 0x80-0xFF of MariaDB's latin1 as Unicode
    "".join(chr(b) if chr(b) in _UNDEFINED else bytes([b]).decode("cp1252")
            for b in range(0x80, 0x100)),
]  # fmt: skip
UTF8MB3_TEXT = ["", "é € 中文 ĀāĂ", "\u2028 \ufeff \uffff"]
UTF8MB4_TEXT = ["", "emoji \U0001f389 \U0001f600", "𝔘𝔫𝔦 \U00010348 é €"]

#: (table, DDL after CREATE TABLE name, rows); the database itself defaults to latin1
MARIADB_TABLES: list[tuple[str, str, list[tuple[Any, ...]]]] = [
    (
        "l1",
        "(id INT PRIMARY KEY, s VARCHAR(300), c CHAR(10), t TEXT, "
        "e ENUM('a','é','€'), st SET('x','ß','¤')) CHARSET latin1",
        [
            (i, v, v[:10].rstrip(" ") or None, v, ("a", "é", "€")[i % 3], "ß,¤" if i % 2 else "")
            for i, v in enumerate(LATIN1_TEXT)
        ],
    ),
    (
        "u3",
        "(id INT PRIMARY KEY, s VARCHAR(40), t TEXT, e ENUM('é','中')) CHARSET utf8mb3",
        [(i, v, v, "中" if i % 2 else "é") for i, v in enumerate(UTF8MB3_TEXT)],
    ),
    (
        "u4",
        # no emoji among ENUM labels: MariaDB's own metadata (information_schema, SHOW CREATE
        # TABLE) is utf8mb3 and shows them as '?'
        "(id INT PRIMARY KEY, s VARCHAR(40), t TEXT, e ENUM('中','é')) CHARSET utf8mb4",
        [(i, v, v, "中" if i % 2 else "é") for i, v in enumerate(UTF8MB4_TEXT)],
    ),
    (
        "mixed",
        "(id INT PRIMARY KEY, l VARCHAR(300) CHARACTER SET latin1, "
        "m3 VARCHAR(40) CHARACTER SET utf8mb3, m4 VARCHAR(40) CHARACTER SET utf8mb4, "
        "a VARCHAR(10) CHARACTER SET ascii, b VARBINARY(10)) CHARSET utf8mb4",
        [
            (0, "", "", "", "", b""),
            (1, LATIN1_TEXT[1], UTF8MB3_TEXT[1], UTF8MB4_TEXT[1], "plain", b"\x80\xff"),
            (2, LATIN1_TEXT[4], UTF8MB3_TEXT[2], UTF8MB4_TEXT[2], "a\tb\\", b"\\\t\n"),
            (3, None, None, None, None, None),
        ],
    ),
]
_SET = {"st": "set", "c": "char"}


_COLS = {
    "l1": ["id", "s", "c", "t", "e", "st"],
    "u3": ["id", "s", "t", "e"],
    "u4": ["id", "s", "t", "e"],
    "mixed": ["id", "l", "m3", "m4", "a", "b"],
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("target_engine", TARGETS)
def test_mariadb_charsets_to_every_target(
    make_pair: Callable[..., Pair],  # noqa: F811
    target_engine: str,
    path: str,
    tmp_path: Path,
) -> None:
    pair = make_pair("mariadb", target_engine)
    src = pair.source_ep
    # a stock server's default: tables without a CHARSET clause are latin1 too
    mysql_exec(src, [f"ALTER DATABASE `{src.database}` CHARACTER SET latin1"])
    mysql_exec(src, [f"CREATE TABLE {name} {ddl}" for name, ddl, _ in MARIADB_TABLES])
    trail = tmp_path / "trail"
    stream = start_stream(pair, trail) if path == "stream" else None
    for name, _, rows in MARIADB_TABLES:
        marks = ", ".join(["%s"] * len(_COLS[name]))
        mysql_insert(src, f"INSERT INTO {name} VALUES ({marks})", rows)
    names = [name for name, _, _ in MARIADB_TABLES]
    if stream is not None:
        finish_stream(pair, trail, stream)
    elif path == "snapshot":
        snapshot(pair, names, tmp_path)
    else:
        repair(pair, names)
    for name, _, rows in MARIADB_TABLES:
        table = TableId(pair.source_schema, name)
        expected = rows_of(pair.source, table, _COLS[name], _SET)
        # the source holds exactly what was written (the oracle reads what the server has)
        assert [r[1] for r in expected] == [
            None if r[1] is None else (r[1] if not isinstance(r[1], bytes) else ("bytes", r[1]))
            for r in rows
        ], name
        got = rows_of(pair.target, pair.rename(table), _COLS[name], _SET)
        assert got == expected, name


# --------------------------------------------------------------------------- latin1 targets

PG_DDL = "CREATE TABLE texts (id int PRIMARY KEY, s text, v varchar(40), c char(6), j jsonb)"
PG_ROWS = [
    (1, "emoji \U0001f389", "中文 é €", "ü€", '{"k": "\U0001f600 é"}'),
    (2, "", "", "", "{}"),
    (3, LATIN1_TEXT[1], UTF8MB3_TEXT[2], "ab", '["€"]'),
    (4, None, None, None, None),
]


@pytest.fixture
def latin1_server(mariadb_server: devservers.DevServer) -> Iterator[None]:
    """The MariaDB server defaults to latin1 for the test (as a stock server does)."""
    conn = pymysql.connect(host="127.0.0.1", port=mariadb_server.port, user="root")
    with conn.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.character_set_server, @@GLOBAL.collation_server")
        ((charset, collation),) = cur.fetchall()
        cur.execute("SET GLOBAL character_set_server = latin1")
        cur.execute("SET GLOBAL collation_server = latin1_swedish_ci")
    try:
        yield
    finally:
        with conn.cursor() as cur:
            cur.execute(f"SET GLOBAL character_set_server = {charset}")
            cur.execute(f"SET GLOBAL collation_server = {collation}")
        conn.close()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("where", ["new-database", "latin1-database"])
def test_postgres_to_latin1_mariadb(
    make_pair: Callable[..., Pair],  # noqa: F811
    latin1_server: None,
    where: str,
    path: str,
    tmp_path: Path,
) -> None:
    """Into a database redoline creates on a latin1 server, and into an existing latin1
    database: the tables are utf8mb4 and every character arrives."""
    pair = make_pair("postgres", "mariadb")
    tgt = pair.target.endpoint
    if where == "latin1-database":
        mysql_exec(tgt, [f"ALTER DATABASE `{tgt.database}` CHARACTER SET latin1"])
    else:
        fresh = f"{tgt.database}_new"
        pair.rename = lambda t: TableId(fresh, t.name)
        pair.cleanup.append(
            lambda: mysql_exec(tgt, [f"DROP DATABASE IF EXISTS `{fresh}`"], database="")
        )
    pg_exec(pair.source_ep, PG_DDL)
    trail = tmp_path / "trail"
    stream = start_stream(pair, trail) if path == "stream" else None
    pg_exec(pair.source_ep, "INSERT INTO texts VALUES (%s, %s, %s, %s, %s)", PG_ROWS)
    if stream is not None:
        finish_stream(pair, trail, stream)
    elif path == "snapshot":
        snapshot(pair, ["texts"], tmp_path)
    else:
        repair(pair, ["texts"])
    cols = ["id", "s", "v", "c", "j"]
    hints = {"c": "char", "j": "json"}
    table = TableId("public", "texts")
    expected = rows_of(pair.source, table, cols, hints)
    assert len(expected) == len(PG_ROWS)
    assert rows_of(pair.target, pair.rename(table), cols, hints) == expected
    target_table = pair.rename(table)
    rows = pair.target.query(
        "SELECT table_collation FROM information_schema.tables WHERE table_schema = %s "
        "AND table_name = %s",
        (target_table.schema, target_table.name),
    )
    assert str(rows[0][0]).startswith("utf8mb4"), rows


# --------------------------------------------------------------------------- the CLI


def _sync(tmp_path: Path, config: str) -> subprocess.CompletedProcess[str]:
    """``redoline sync --until-caught-up`` in a subprocess, as cron runs it."""
    path = tmp_path / "redoline.toml"
    path.write_text(config)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from toolkit_cli.app import main; main()",
            "sync",
            "--until-caught-up",
            "--trail",
            str(tmp_path / "trail"),
        ],
        env={**os.environ, "REDOLINE_CONFIG": str(path), "NO_COLOR": "1"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_sync_latin1_mariadb_to_postgres(
    make_pair: Callable[..., Pair],  # noqa: F811
    tmp_path: Path,
) -> None:
    """The user's flow on a stock MariaDB: snapshot of latin1 tables, then streaming."""
    pair = make_pair("mariadb", "postgres")
    src = pair.source_ep
    mysql_exec(src, [f"ALTER DATABASE `{src.database}` CHARACTER SET latin1"])
    name, ddl, rows = MARIADB_TABLES[0]
    mysql_exec(src, [f"CREATE TABLE {name} {ddl}"])
    marks = ", ".join(["%s"] * len(_COLS[name]))
    mysql_insert(src, f"INSERT INTO {name} VALUES ({marks})", rows)
    config = (
        f'[source]\nurl = "{src.url()}"\nserver_id = 4200777\n'
        f'[target]\nurl = "{pair.target.endpoint.url()}"\n'
        f'[tables]\ninclude = ["{src.database}.*"]\n'
    )
    first = _sync(tmp_path, config)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"{len(rows)} rows" in first.stdout, first.stdout
    # streaming: the same values again under new keys (the first run captured nothing:
    # the second must still start where the first one's snapshot stood)
    mysql_insert(src, f"INSERT INTO {name} VALUES ({marks})", [(r[0] + 100, *r[1:]) for r in rows])
    second = _sync(tmp_path, config)
    assert second.returncode == 0, second.stdout + second.stderr
    table = TableId(src.database, name)
    expected = rows_of(pair.source, table, _COLS[name], _SET)
    assert len(expected) == 2 * len(rows)
    assert rows_of(pair.target, table, _COLS[name], _SET) == expected


def test_cli_sync_postgres_to_latin1_mariadb(
    make_pair: Callable[..., Pair],  # noqa: F811
    latin1_server: None,
    tmp_path: Path,
) -> None:
    """Into a database redoline creates on a latin1 server: snapshot, then streaming."""
    pair = make_pair("postgres", "mariadb")
    tgt = pair.target.endpoint
    fresh = f"{tgt.database}_cli"
    pair.cleanup.append(
        lambda: mysql_exec(tgt, [f"DROP DATABASE IF EXISTS `{fresh}`"], database="")
    )
    pg_exec(pair.source_ep, PG_DDL)
    pg_exec(pair.source_ep, "INSERT INTO texts VALUES (%s, %s, %s, %s, %s)", PG_ROWS)
    config = (
        f'[source]\nurl = "{pair.source_ep.url()}"\n'
        f'[target]\nurl = "{tgt.url()}"\n'
        f'[tables]\ninclude = ["public.*"]\nrename = {{ "public" = "{fresh}" }}\n'
    )
    first = _sync(tmp_path, config)
    assert first.returncode == 0, first.stdout + first.stderr
    pg_exec(
        pair.source_ep,
        "INSERT INTO texts VALUES (%s, %s, %s, %s, %s)",
        [(r[0] + 100, *r[1:]) for r in PG_ROWS],
    )
    second = _sync(tmp_path, config)
    assert second.returncode == 0, second.stdout + second.stderr
    cols = ["id", "s", "v", "c", "j"]
    hints = {"c": "char", "j": "json"}
    expected = rows_of(pair.source, TableId("public", "texts"), cols, hints)
    assert len(expected) == 2 * len(PG_ROWS)
    assert rows_of(pair.target, TableId(fresh, "texts"), cols, hints) == expected


def test_library_decoder_latin1(
    make_pair: Callable[..., Pair],  # noqa: F811
    tmp_path: Path,
) -> None:
    """The support decoder (mysql-replication) reads latin1 text as MariaDB does, and refuses
    latin1 ENUM labels it would turn into '' instead of capturing wrong values."""
    pair = make_pair("mariadb", "postgres")
    src = pair.source_ep
    mysql_exec(src, [f"CREATE TABLE {name} {ddl}" for name, ddl, _ in MARIADB_TABLES])
    trail = tmp_path / "trail"
    stream = start_stream(pair, trail)
    stream.reader_options["decoder"] = "library"
    name, _, rows = MARIADB_TABLES[3]  # mixed charsets, no ENUM
    mysql_insert(src, f"INSERT INTO {name} VALUES (%s, %s, %s, %s, %s, %s)", rows)
    finish_stream(pair, trail, stream)
    table = TableId(pair.source_schema, name)
    expected = rows_of(pair.source, table, _COLS[name], {})
    assert [r[1] for r in expected] == [r[1] for r in rows]
    assert rows_of(pair.target, table, _COLS[name], {}) == expected
    name, _, rows = MARIADB_TABLES[0]  # latin1 ENUM and SET labels
    mysql_insert(src, f"INSERT INTO {name} VALUES (%s, %s, %s, %s, %s, %s)", rows)
    with pytest.raises(SchemaError, match="labels of column 'e'"):
        run_capture(pair.source, trail, stream)
