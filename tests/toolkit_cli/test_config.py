"""Configuration: TOML shape, env interpolation, precedence, and errors that name key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.errors import ConfigError
from connectors.model import TableId
from toolkit_cli.config import load

EXAMPLE = """\
[source]
url = "mariadb://repl@127.0.0.1:3306/shop"
password = "${SOURCE_PASSWORD}"

[target]
url = "duckdb:///var/lib/redoline/replica.duckdb"

[trail]
dir = "./trail"

[tables]
include = ["shop.*"]
exclude = ["shop.tmp_*"]
"""


@pytest.fixture
def write(tmp_path: Path):  # type: ignore[no-untyped-def]
    def _write(text: str) -> Path:
        path = tmp_path / "redoline.toml"
        path.write_text(text)
        return path

    return _write


def test_issue_example(write, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SOURCE_PASSWORD", "pw-from-env")
    cfg = load(write(EXAMPLE))
    src = cfg.source()
    assert src.endpoint.engine == "mysql"
    assert src.endpoint.password.reveal() == "pw-from-env"
    assert "pw-from-env" not in repr(cfg)
    assert cfg.target().endpoint.path == "/var/lib/redoline/replica.duckdb"
    assert cfg.trail.dir == Path("./trail")
    f = cfg.tables.filter
    assert f(TableId("shop", "orders"))
    assert not f(TableId("shop", "tmp_x"))
    assert not f(TableId("other", "orders"))


def test_precedence_flag_over_env_over_file(write, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SOURCE_PASSWORD", "x")
    path = write(EXAMPLE)
    monkeypatch.setenv("REDOLINE_TARGET_URL", "postgresql://env@h/db")
    monkeypatch.setenv("REDOLINE_TRAIL_DIR", "/env/trail")
    cfg = load(path)
    assert cfg.target().endpoint.user == "env"
    assert cfg.trail.dir == Path("/env/trail")
    cfg = load(path, target="postgresql://flag@h/db", trail="/flag/trail")
    assert cfg.target().endpoint.user == "flag"
    assert cfg.trail.dir == Path("/flag/trail")


def test_password_env_override(write, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SOURCE_PASSWORD", "file")
    monkeypatch.setenv("REDOLINE_SOURCE_PASSWORD", "env")
    assert load(write(EXAMPLE)).source().endpoint.password.reveal() == "env"


def test_missing_env_var_names_key_and_line(write, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("SOURCE_PASSWORD", raising=False)
    with pytest.raises(ConfigError) as info:
        load(write(EXAMPLE))
    err = info.value
    assert err.line == 3 and err.key == "source.password"
    assert "SOURCE_PASSWORD is not set" in str(err)


def test_unknown_key_names_line(write) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        load(write('[trail]\ndir = "t"\nsegmnet_mb = 5\n'))
    assert info.value.line == 3
    assert "segmnet_mb" in str(info.value) and "segment_mb" in str(info.value)


def test_unknown_section(write) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=r"unknown section \[sorce\]"):
        load(write('[sorce]\nurl = "mysql://a@b/c"\n'))


def test_malformed_toml_names_line(write) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        load(write('[source]\nurl = "mysql://a@b/c\n'))
    assert info.value.line == 2
    assert "not valid TOML" in str(info.value)


def test_bad_value_type(write) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        load(write('[apply]\nbatch_rows = "many"\n'))
    assert info.value.key == "apply.batch_rows" and info.value.line == 2


def test_unknown_scheme_in_file(write) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="unknown URL scheme 'sqlite'"):
        load(write('[target]\nurl = "sqlite:///x.db"\n'))


def test_named_sources_and_targets(write) -> None:  # type: ignore[no-untyped-def]
    cfg = load(
        write(
            '[sources.eu]\nurl = "mysql://a@eu/shop"\n[sources.us]\nurl = "mysql://a@us/shop"\n'
            '[targets.dw]\nurl = "duckdb:///dw.duckdb"\n'
        )
    )
    assert cfg.source("eu").endpoint.host == "eu"
    assert cfg.target().endpoint.path == "/dw.duckdb"
    with pytest.raises(ConfigError, match="several sources"):
        cfg.source()
    with pytest.raises(ConfigError, match="no source named"):
        cfg.source("asia")


def test_explicit_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.toml")


def test_no_file_flags_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load(source="mariadb://r@h/shop", target="duckdb:///x.duckdb", trail="t")
    assert cfg.source().endpoint.database == "shop"
    assert cfg.path is None


def test_renames(write) -> None:  # type: ignore[no-untyped-def]
    cfg = load(write('[tables.rename]\n"shop.orders" = "sales.orders_v2"\n"crm" = "crm_copy"\n'))
    assert cfg.tables.target_name(TableId("shop", "orders")) == TableId("sales", "orders_v2")
    assert cfg.tables.target_name(TableId("crm", "users")) == TableId("crm_copy", "users")
    assert cfg.tables.target_name(TableId("shop", "items")) == TableId("shop", "items")


def test_trail_key(tmp_path: Path, write, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    key = "ab" * 32
    monkeypatch.setenv("TRAIL_KEY", key)
    cfg = load(write('[trail]\nkey_env = "TRAIL_KEY"\n'))
    assert cfg.trail.key() == bytes.fromhex(key)
    monkeypatch.setenv("TRAIL_KEY", "short")
    with pytest.raises(ConfigError, match="32 bytes"):
        cfg.trail.key()


def test_postgres_slot_and_publication(write) -> None:  # type: ignore[no-untyped-def]
    text = '[source]\nurl = "postgresql://repl@h/shop"\nslot = "shop_eu"\npublication = "pub_eu"\n'
    src = load(write(text)).source()
    assert (src.options.slot, src.options.publication) == ("shop_eu", "pub_eu")
    assert src.engine_options() == {"slot": "shop_eu", "publication": "pub_eu"}
    # a --source URL replaces the URL only; flags override the names
    src = load(write(text), source="postgresql://other@h2/shop", slot="shop_us").source()
    assert src.endpoint.host == "h2"
    assert (src.options.slot, src.options.publication) == ("shop_us", "pub_eu")
    assert load(write('[source]\nurl = "postgresql://h/shop"\n')).source().engine_options() == {}


@pytest.mark.parametrize("name", ["Shop", "shop-eu", "", "x" * 64, 7])
def test_bad_slot_name_names_key_and_line(write, name: object) -> None:  # type: ignore[no-untyped-def]
    value = f'"{name}"' if isinstance(name, str) else str(name)
    with pytest.raises(ConfigError, match="is not a usable name: use 1 to 63 lower-case") as info:
        load(write(f'[source]\nurl = "postgresql://h/shop"\n\nslot = {value}\n'))
    assert info.value.key == "source.slot" and info.value.line == 4
    with pytest.raises(ConfigError, match="not a usable name") as info:
        load(write(f'[source]\nurl = "postgresql://h/shop"\npublication = {value}\n'))
    assert info.value.key == "source.publication" and info.value.line == 3
    if isinstance(name, str):
        with pytest.raises(ConfigError, match=r"--slot: .* is not a usable name"):
            load(write('[source]\nurl = "postgresql://h/shop"\n'), slot=name)
