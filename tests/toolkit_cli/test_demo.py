"""The README demo runs end to end (small workload) and reports verified, identical replicas."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def test_demo_quick(cli: Callable[..., Any]) -> None:
    result = cli("demo", "--quick")
    assert result.exit_code == 0, result.stdout + result.stderr
    out = result.stdout
    assert "into duckdb: shop.orders" in out and "into postgresql: shop.orders" in out
    # redoline verify's engine, then the independent row comparison, for each target
    assert "verify duckdb: shop.orders" in out and "verify postgresql: shop.orders" in out
    assert out.count(": equal") == 2
    assert out.count("identical") == 2
    assert out.count("lag 0 operations") == 2
    assert "result: OK" in out
    # every figure is explained and adds up: committed = unchanged + captured, and each
    # target's applied changes + those its snapshot already held = the trail's changes
    import re

    m = re.search(
        r"committed ([\d,]+) transactions; ([\d,]+) of them changed no row.*"
        r"capture wrote the other ([\d,]+) \(([\d,]+) row changes",
        out,
    )
    assert m, out
    committed, unchanged, captured, changes = (int(g.replace(",", "")) for g in m.groups())
    assert committed == unchanged + captured
    for name in ("duckdb", "postgresql"):
        t = re.search(
            rf"{name}: applied ([\d,]+) of the trail's ([\d,]+) changes \(the other "
            r"([\d,]+) were already in its snapshot",
            out,
        )
        assert t, out
        applied, total, held = (int(g.replace(",", "")) for g in t.groups())
        assert total == changes and applied + held == total
    # the report is not interleaved with the stages' log lines
    assert not re.search(r"^\S+ \S+ INFO ", out, re.M) and " INFO " not in result.stderr
