"""`redoline X` wires only X's module; the names it routes by are what the modules register."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import typer

from toolkit_cli.app import COMMANDS, wire


def test_command_names_match_what_each_module_registers() -> None:
    for module_name, names in COMMANDS.items():
        module = importlib.import_module(f"toolkit_cli.commands.{module_name}")
        if hasattr(module, "register"):
            probe = typer.Typer()
            module.register(probe)
            got = tuple(c.name or "" for c in probe.registered_commands)
        else:
            got = (getattr(module, "NAME", module_name),)
        assert got == names, module_name
    # and no command module is left out of the table
    import toolkit_cli.commands as pkg

    found = {p.stem for p in Path(pkg.__file__).parent.glob("[a-z]*.py")}
    assert found <= set(COMMANDS) | {"__init__"}, found - set(COMMANDS)


def test_full_wiring_keeps_help_order_after_a_single_command() -> None:
    wire("apply")
    app = wire()
    names = [c.name for c in app.registered_commands] + [g.name for g in app.registered_groups]
    expected = [n for names in COMMANDS.values() for n in names]
    assert sorted(names) == sorted(expected)
    commands = [c.name for c in app.registered_commands]
    assert commands == [n for n in expected if n in commands]


def _redoline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from toolkit_cli.app import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_one_command_imports_only_its_module() -> None:
    probe = (
        "import sys; from toolkit_cli.app import wire; wire('status'); "
        "print(sorted(m for m in sys.modules if m.startswith('toolkit_cli.commands.')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "toolkit_cli.commands.status" in out.stdout
    assert "toolkit_cli.commands.demo" not in out.stdout
    # the user-facing behaviour: help of one command, all commands, an unknown one
    res = _redoline("status", "--help")
    assert res.returncode == 0 and "Usage: redoline status" in res.stdout, res.stdout + res.stderr
    res = _redoline("--help")
    assert res.returncode == 0
    assert all(name in res.stdout for names in COMMANDS.values() for name in names), res.stdout
    res = _redoline("statsu")
    assert res.returncode == 2 and "No such command" in res.stderr, res.stderr
