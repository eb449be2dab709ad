"""The ``redoline`` command: a typer app that wires the stages together. No business logic.

Each stage runs alone (``capture``, ``apply``, ``snapshot``, ``verify`` ...) over a trail
directory, and ``sync`` chains them for the single-host case. Errors are printed as one clear
message and mapped to the documented exit code (``docs/exit-codes.md``); ``--debug`` shows
the traceback.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import threading
import traceback
from types import FrameType
from typing import Annotated

import typer
from rich.markup import escape

from connectors.errors import ConfigError, StorageError, ToolkitError
from toolkit_cli.output import err_console, setup_logging

__all__ = ["app", "main"]

app = typer.Typer(
    name="redoline",
    help="Log-based database replication: capture the source's transaction log into a "
    "checksummed trail, apply it exactly once to a target, and verify both sides agree.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(version("redoline"))
        raise typer.Exit()


@app.callback()
def _global(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when something fails.")
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output (-v: debug).")
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    if quiet and verbose:
        raise ConfigError("-q/--quiet and -v/--verbose contradict each other: give one")
    _state["debug"] = debug
    setup_logging(verbose, quiet)


# Sub-commands live in toolkit_cli/commands/<name>.py, in this order in --help, each with the
# command names it adds. A module that defines `register(app)` adds its commands; one that
# defines `app` (a typer.Typer) becomes a command group. A missing module is an ImportError at
# start, never a silently absent command. `redoline X` imports only X's module: importing all
# of them took 1.5 s of every cron run's start (tests/toolkit_cli/test_app_wiring.py keeps the
# names below equal to what the modules register).
COMMANDS: dict[str, tuple[str, ...]] = {
    "check": ("check",),
    "devservers": ("dev-servers",),
    "trail": ("trail",),
    "capture": ("capture",),
    "ship": ("ship", "receive"),
    "prepare": ("init", "drop"),
    "apply": ("apply",),
    "snapshot": ("snapshot", "sync"),
    "status": ("status",),
    "verify": ("verify", "repair"),
    "undo": ("undo",),
    "mark": ("mark",),
    "demo": ("demo",),
}
_wired: list[str] = []


def wire(command: str | None = None) -> typer.Typer:
    """The app with the module of ``command`` wired, or every module (None, or a name no
    module gives: click then lists them all in its error)."""
    modules = [m for m, names in COMMANDS.items() if command in names]
    if not modules:
        if len(_wired) == len(COMMANDS):
            return app
        # all of them, in --help order, whatever was wired before
        app.registered_commands.clear()
        app.registered_groups.clear()
        _wired.clear()
        modules = list(COMMANDS)
    for name in modules:
        if name in _wired:
            continue
        module = importlib.import_module(f"toolkit_cli.commands.{name}")
        if hasattr(module, "register"):
            module.register(app)
        elif hasattr(module, "app"):
            app.add_typer(module.app, name=getattr(module, "NAME", name))
        else:
            raise ImportError(f"toolkit_cli.commands.{name} defines neither register nor app")
        _wired.append(name)
    return app


#: options of the top-level callback that a user may also type after the subcommand
#: (``redoline sync --until-caught-up -q``, as crontab lines are usually written)
_GLOBAL_FLAGS = ("--debug", "--quiet", "--verbose")


def _hoist_global_options(argv: list[str]) -> list[str]:
    """Move global flags typed after the subcommand to before it (click only reads them there).

    Stops at ``--`` so arguments meant literally are never touched. Short flags are matched
    whole or as bundles of ``q``/``v`` (``-vv``), never as a prefix of a longer option.
    """
    hoisted: list[str] = []
    rest: list[str] = []
    seen_command = False
    for i, arg in enumerate(argv):
        if arg == "--":
            rest.extend(argv[i:])
            break
        is_global = arg in _GLOBAL_FLAGS or (
            len(arg) > 1 and arg[0] == "-" and arg[1] != "-" and set(arg[1:]) <= {"q", "v"}
        )
        if seen_command and is_global:
            hoisted.append(arg)
        else:
            if not arg.startswith("-"):
                seen_command = True
            rest.append(arg)
    return hoisted + rest


def main() -> None:
    """Console-script entry point."""
    # Trails hold full row images and state files hold positions: private whatever the
    # caller's umask (0700 directories, 0600 files).
    os.umask(0o077)
    # from here on SIGTERM is an interruption like Ctrl-C (exit 130 after cleanup); the long
    # commands install their own handlers that finish the current transaction first
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        args = _hoist_global_options(sys.argv[1:])
        command = next((a for a in args if not a.startswith("-")), None)
        wire(command)(args=args, prog_name="redoline", standalone_mode=True)
    except OSError as exc:
        if not StorageError.handles(exc):
            _internal_error()
        _print_error(StorageError.from_oserror(exc))
    except ToolkitError as exc:
        _print_error(exc)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception:
        _internal_error()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    if _importing(frame):
        # an exception cannot unwind through a C extension's module initialisation (DuckDB's
        # aborts the process: CI seed 102 died with -6); ask again once the import is over
        threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
        return
    raise KeyboardInterrupt


def _importing(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _print_error(exc: ToolkitError) -> None:
    if _state["debug"]:
        traceback.print_exc()
    err_console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
    if exc.hint:
        err_console.print(f"[yellow]hint:[/] {escape(exc.hint)}", highlight=False)
    sys.exit(exc.exit_code)


def _internal_error() -> None:
    logging.getLogger("redoline").debug("unexpected error", exc_info=True)
    traceback.print_exc()
    err_console.print(
        "[bold red]internal error[/]: this is a bug in redoline; the traceback above "
        "helps us fix it."
    )
    sys.exit(70)
