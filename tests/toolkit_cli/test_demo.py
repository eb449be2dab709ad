"""The README demo runs end to end (small workload) and reports identical replicas."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def test_demo_quick(cli: Callable[..., Any]) -> None:
    result = cli("demo", "--quick")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "snapshot into duckdb" in result.stdout
    assert "snapshot into postgresql" in result.stdout
    assert result.stdout.count("identical") == 2
    assert "OK" in result.stdout
