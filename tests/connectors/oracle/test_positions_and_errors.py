"""Oracle positions (text form and order) and the mapping of server errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.endpoint import Endpoint
from connectors.errors import (
    AuthError,
    ConnectError,
    MissingObjectError,
    PrerequisiteError,
    ReplicationError,
)
from connectors.oracle.positions import OraclePosition, compare, parse_rs_id
from connectors.oracle.session import OracleSession, SessionError, map_error

records = st.one_of(
    st.none(),
    st.tuples(*(st.integers(0, 2**31) for _ in range(5))),
)


@given(st.integers(0, 2**48), st.integers(0, 2**48), records)
def test_positions_round_trip(scn: int, restart: int, record: tuple[int, ...] | None) -> None:
    pos = OraclePosition(scn, restart, record)  # type: ignore[arg-type]
    assert OraclePosition.parse(str(pos)) == pos
    assert compare(str(pos), str(pos)) == 0


def test_order_by_scn_then_commit_record_and_whole_scn_last() -> None:
    ordered = [
        "99@90",
        "100.1.7.1b2.10.0@95",
        "100.1.7.1b2.10.1@95",
        "100.2.3.5.10.0@80",  # same SCN on thread 2 after thread 1
        "100@101",  # every commit at SCN 100
        "101.1.7.1c0.10.0@101",
    ]
    for i, a in enumerate(ordered):
        for j, b in enumerate(ordered):
            assert compare(a, b) == (i > j) - (i < j), (a, b)
    # the restart SCN does not take part in the order
    assert compare("100@50", "100@101") == 0


@pytest.mark.parametrize("bad", ["", "100", "x@1", "1.2.3@4", "1.2.3.zz.5.6@7"])
def test_bad_positions_are_named(bad: str) -> None:
    with pytest.raises(ValueError, match="not an Oracle position"):
        OraclePosition.parse(bad)


def test_rs_id() -> None:
    assert parse_rs_id(" 0x00002a.000001b2.0010 ") == (42, 0x1B2, 0x10)
    with pytest.raises(ValueError, match="RS_ID"):
        parse_rs_id("42")


EP = Endpoint.parse("oracle://capture:hunter2@db.example/ORCL")


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("ORA-01017", AuthError),
        ("ORA-12541", ConnectError),
        ("DPY-6005", ConnectError),
        ("ORA-03113", ConnectError),
        ("ORA-00942", MissingObjectError),
        ("ORA-01031", PrerequisiteError),
        ("ORA-01291", ReplicationError),
        ("ORA-01555", ReplicationError),
    ],
)
def test_server_errors_map_once(code: str, cls: type) -> None:
    err = map_error(SessionError(code, "text"), EP, "mining")
    assert type(err) is cls and code in str(err) and "hunter2" not in str(err)


def test_the_real_driver_reports_an_unreachable_listener_as_transient() -> None:
    ep = Endpoint.parse("oracle://capture:hunter2@127.0.0.1:1/ORCL?connect_timeout=2")
    with pytest.raises(ConnectError) as info:
        OracleSession(ep)
    assert "hunter2" not in str(info.value)
