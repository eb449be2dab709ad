"""`redoline check` against real servers, and the error/exit-code boundary of the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from connectors import devservers
from connectors.endpoint import Endpoint


@pytest.fixture(scope="module")
def plain_mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devservers.DevServer]:
    """MariaDB as Debian ships it: no binlog, MIXED format, no row metadata."""
    server = devservers.start_mariadb(Path(tmp_path_factory.mktemp("plain")), binlog=False)
    yield server
    devservers.stop(server)


def _failed(result_json: str) -> set[str]:
    data = json.loads(result_json)
    return {
        item["name"]
        for ep in data["endpoints"]
        for item in ep["items"]
        if item["blocking"] and not item["ok"]
    }


def test_check_lists_exactly_what_to_change(cli, plain_mariadb) -> None:  # type: ignore[no-untyped-def]
    res = cli("check", "--source", f"mariadb://root@127.0.0.1:{plain_mariadb.port}/", "--json")
    assert res.exit_code == 1
    assert _failed(res.stdout) == {"log_bin", "binlog_format", "binlog_row_metadata"}
    human = cli("check", "--source", f"mariadb://root@127.0.0.1:{plain_mariadb.port}/")
    assert human.exit_code == 1
    assert "SET GLOBAL binlog_format = 'ROW'" in human.stdout
    assert "Replication is blocked" in human.stdout


def test_check_passes_on_replication_ready_servers(cli, mariadb_server, pg_db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = cli(
        "check",
        "--source",
        f"mariadb://root@127.0.0.1:{mariadb_server.port}/",
        "--target",
        pg_db.display,
        "--json",
    )
    assert res.exit_code == 0, res.stdout + res.stderr
    data = json.loads(res.stdout)
    assert data["ok"] is True
    assert [ep["role"] for ep in data["endpoints"]] == ["source", "target"]
    duck = cli(
        "check",
        "--source",
        f"mariadb://root@127.0.0.1:{mariadb_server.port}/",
        "--target",
        f"duckdb://{tmp_path}/t.duckdb",
    )
    assert duck.exit_code == 0


def test_check_postgres_source_flags_keyless_table(cli, pg_db) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    with psycopg.connect(
        host=pg_db.host, port=pg_db.port, user="postgres", dbname=pg_db.database, autocommit=True
    ) as conn:
        conn.execute("CREATE TABLE public.nokey (a int, b text)")
        conn.execute("CREATE TABLE public.keyed (id int primary key)")
    res = cli("check", "--source", pg_db.display, "--json")
    assert res.exit_code == 1
    assert _failed(res.stdout) == {"replica identity public.nokey"}
    items = json.loads(res.stdout)["endpoints"][0]["items"]
    # blocking ones: `undo possible public.keyed` is advice (tests/apply/test_undo_cli.py)
    hints = [i["hint"] for i in items if not i["ok"] and i["blocking"]]
    assert hints == ['ALTER TABLE "public"."nokey" REPLICA IDENTITY FULL']


@pytest.fixture
def secret_user(mariadb_server) -> Iterator[Endpoint]:  # type: ignore[no-untyped-def]
    conn = pymysql.connect(host="127.0.0.1", port=mariadb_server.port, user="root")
    with conn.cursor() as cur:
        cur.execute("CREATE USER IF NOT EXISTS 'app'@'127.0.0.1' IDENTIFIED BY 'Corr3ct-H0rse'")
    yield Endpoint.parse(f"mariadb://app@127.0.0.1:{mariadb_server.port}/")
    with conn.cursor() as cur:
        cur.execute("DROP USER IF EXISTS 'app'@'127.0.0.1'")
    conn.close()


def test_wrong_password(cli, secret_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("REDOLINE_SOURCE_PASSWORD", "wr0ng-Battery")
    res = cli("check", "--source", secret_user.display, "--json")
    assert res.exit_code == 1
    data = json.loads(res.stdout)
    assert "refused the login" in data["endpoints"][0]["error"]
    assert "wr0ng-Battery" not in res.stdout + res.stderr


def test_wrong_password_in_url_is_not_echoed(cli, secret_user) -> None:  # type: ignore[no-untyped-def]
    url = secret_user.display.replace("app@", "app:wr0ng-Battery@")
    res = cli("check", "--source", url)
    assert res.exit_code == 1
    assert "refused the login" in res.stdout
    assert "wr0ng-Battery" not in res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr


def test_unreachable_host(cli) -> None:  # type: ignore[no-untyped-def]
    port = devservers.find_free_port()
    res = cli("check", "--source", f"mariadb://root@127.0.0.1:{port}/shop")
    assert res.exit_code == 1
    assert "cannot reach the server" in res.stdout


def test_missing_database(cli, postgres_server) -> None:  # type: ignore[no-untyped-def]
    res = cli("check", "--target", f"postgresql://postgres@127.0.0.1:{postgres_server.port}/nope")
    assert res.exit_code == 1
    assert "database 'nope' does not exist" in res.stdout


def test_unknown_scheme_exit_2(cli) -> None:  # type: ignore[no-untyped-def]
    res = cli("check", "--source", "sqlite:///x.db")
    assert res.exit_code == 2
    assert "unknown URL scheme 'sqlite'" in res.stderr
    assert "Traceback" not in res.stderr


def test_malformed_toml_exit_2(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.toml"
    bad.write_text('[source]\nurl = "mysql://x@y/z"\npassword = \n')
    res = cli("check", "--config", str(bad))
    assert res.exit_code == 2
    assert f"{bad}:3" in res.stderr
    assert "not valid TOML" in res.stderr
    assert "Traceback" not in res.stderr


def test_debug_shows_traceback(cli) -> None:  # type: ignore[no-untyped-def]
    res = cli("--debug", "check", "--source", "sqlite:///x.db")
    assert res.exit_code == 2
    assert "Traceback" in res.stderr


def test_dev_servers_up_status_down(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = str(tmp_path / "dev")
    up = cli("dev-servers", "up", "--dir", d, "--engine", "postgresql", "--json")
    assert up.exit_code == 0, up.stderr
    (server,) = json.loads(up.stdout)
    assert server["engine"] == "postgresql" and server["running"]
    status = cli("dev-servers", "status", "--dir", d)
    assert "running" in status.stdout and server["url"] in status.stdout
    down = cli("dev-servers", "down", "--dir", d)
    assert down.exit_code == 0
    after = json.loads(cli("dev-servers", "status", "--dir", d, "--json").stdout)
    assert after == []
