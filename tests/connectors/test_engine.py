"""Engine descriptors: found per package, roles reached through them, typed [source] keys."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from connectors.base import Database, open_database, position_comparator
from connectors.endpoint import Endpoint
from connectors.engine import ROLES, all_engines, engine_for_scheme, get_engine
from connectors.errors import ConfigError
from tests.clirun import redoline
from toolkit_cli.config import load

ROOT = Path(__file__).resolve().parents[2]


def test_every_engine_package_has_a_descriptor() -> None:
    names = {e.name for e in all_engines()}
    packages = {p.name for p in (ROOT / "connectors").iterdir() if (p / "__init__.py").exists()}
    assert {"mysql", "postgresql", "duckdb"} <= names
    assert len(packages) == len(names)
    sources = {e.name for e in all_engines() if e.provides("log_reader")}
    assert sources == {"mysql", "postgresql", "oracle", "sqlserver"}
    targets = {e.name for e in all_engines() if e.provides("writer")}
    assert targets == {"mysql", "postgresql", "duckdb"}
    for engine in all_engines():
        assert set(engine.roles) <= set(ROLES)
        assert engine.has_log == engine.provides("log_reader") == engine.provides("positions")
        if engine.provides("writer"):  # a target needs all of its parts
            assert {"bulk", "types", "checksum"} <= set(engine.roles)
        for role in engine.roles:
            engine.role(role)  # every declared role module imports
        cls = engine.database_class()
        assert issubclass(cls, Database) and cls.descriptor is engine
        assert (cls.engine, cls.dialect, cls.has_log) == (
            engine.name,
            engine.dialect,
            engine.has_log,
        )


@pytest.mark.parametrize(
    ("scheme", "engine", "port"),
    [("mariadb", "mysql", 3306), ("mysql", "mysql", 3306), ("postgres", "postgresql", 5432)],
)
def test_schemes_and_ports_come_from_descriptors(scheme: str, engine: str, port: int) -> None:
    found = engine_for_scheme(scheme)
    assert found is not None and found.name == engine and found.default_port == port
    assert Endpoint.parse(f"{scheme}://u@h/db").port == port


def test_a_missing_role_names_engine_and_role(tmp_path: Path) -> None:
    duck = open_database(Endpoint.parse(f"duckdb://{tmp_path}/x.duckdb"))
    with pytest.raises(ConfigError, match=r"the duckdb engine has no log reader role"):
        duck.open_log(None, tables=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"the duckdb engine has no position ordering role"):
        position_comparator("duckdb")
    maria = open_database(Endpoint.parse("mariadb://u@h/db"))
    with pytest.raises(ConfigError, match=r"the mysql engine has no source preparation"):
        maria.release_source(None, trail_dir=tmp_path, source_id="s")
    with pytest.raises(ConfigError, match=r"no connector for engine 'db2'"):
        get_engine("db2")


def test_positions_order_by_the_engine_named_in_the_trail() -> None:
    assert position_comparator("postgresql")("0/10", "0/9") == 1
    assert position_comparator("mysql")("b.000002:4", "b.000001:900") == 1


def test_source_options_are_typed_by_the_engine(tmp_path: Path) -> None:
    path = tmp_path / "redoline.toml"
    path.write_text('[source]\nurl = "mariadb://h/shop"\nserver_id = 77\ndecoder = "library"\n')
    src = load(path).source()
    assert dataclasses.asdict(src.options) == {"server_id": 77, "decoder": "library"}
    assert src.engine_options() == {"server_id": 77, "decoder": "library"}
    path.write_text('[source]\nurl = "mariadb://h/shop"\n\ndecoder = "turbo"\n')
    with pytest.raises(ConfigError, match='must be "fast" or "library"') as info:
        load(path)
    assert info.value.key == "source.decoder" and info.value.line == 4
    path.write_text('[source]\nurl = "mariadb://h/shop"\nserver_id = "x"\n')
    with pytest.raises(ConfigError, match="must be a whole number") as info:
        load(path)
    assert info.value.key == "source.server_id"
    path.write_text('[source]\nurl = "mariadb://h/shop"\nsever_id = 7\n')
    with pytest.raises(ConfigError, match="unknown key 'sever_id'"):
        load(path)
    # a flag is checked by the engine too
    path.write_text('[source]\nurl = "mariadb://h/shop"\n')
    with pytest.raises(ConfigError, match='--decoder: must be "fast" or "library"'):
        load(path, source_options={"decoder": "turbo"})


def test_init_on_a_source_without_preparation_names_engine_and_role(tmp_path: Path) -> None:
    path = tmp_path / "redoline.toml"
    path.write_text('[source]\nurl = "mariadb://root@127.0.0.1:1/shop"\n')
    out = redoline("init", "-c", str(path), cwd=tmp_path, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "the mysql engine has no source preparation" in out.stderr


def test_one_load_data_statement_for_writer_and_snapshot() -> None:
    from connectors.mysql.loaddata import load_statement

    sql = load_statement("`s`.`t`", [("`a`", "int"), ("`b`", "bytes"), ("`c`", "bit")])
    assert "(`a`, @v1, @v2) SET `b` = UNHEX(@v1), `c` = CAST(CONV(@v2, 2, 10) AS UNSIGNED)" in sql
    assert sql.startswith("LOAD DATA LOCAL INFILE %s INTO TABLE `s`.`t` CHARACTER SET utf8mb4")


def test_connection_failures_have_one_category_each() -> None:
    from connectors.errors import (
        AuthError,
        ConnectError,
        ConnectionFailure,
        ConnectSetupError,
        Terminal,
        Transient,
    )

    for cls in (ConnectError, AuthError, ConnectSetupError):
        assert issubclass(cls, ConnectionFailure) and cls.exit_code == 3
        assert issubclass(cls, Transient) != issubclass(cls, Terminal)
    assert issubclass(AuthError, Terminal) and not issubclass(AuthError, Transient)
