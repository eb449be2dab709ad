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
