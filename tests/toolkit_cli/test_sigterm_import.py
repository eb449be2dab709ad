"""SIGTERM while a module is being imported is held until the import is over.

DuckDB's module initialisation runs Python code from C++; a KeyboardInterrupt raised there
cannot unwind and the process aborts (-6) instead of exiting 130 (CI, campaign seed 102).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def test_sigterm_during_import_waits_for_the_import(tmp_path: Path) -> None:
    (tmp_path / "slowmod.py").write_text(
        textwrap.dedent(
            """
            import os, signal, time
            os.kill(os.getpid(), signal.SIGTERM)
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                time.sleep(0.01)
            FINISHED = True
            """
        )
    )
    script = textwrap.dedent(
        """
        import signal, sys, time
        from toolkit_cli.app import _interrupt
        signal.signal(signal.SIGTERM, _interrupt)
        sys.path.insert(0, sys.argv[1])
        try:
            import slowmod
            time.sleep(5)
            print("not interrupted")
        except KeyboardInterrupt:
            print("interrupted after import" if "slowmod" in sys.modules else "during import")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "interrupted after import"


def test_duckdb_import_survives_sigterm_storm() -> None:
    # the real case: SIGTERM every millisecond while duckdb imports; the interruption lands
    # after the import (with a plain raising handler it lands inside it, every time)
    script = textwrap.dedent(
        """
        import os, signal, sys, threading, time
        from toolkit_cli.app import _interrupt
        signal.signal(signal.SIGTERM, _interrupt)
        stop = threading.Event()
        def storm():
            while not stop.wait(0.001):
                os.kill(os.getpid(), signal.SIGTERM)
        threading.Thread(target=storm, daemon=True).start()
        try:
            import duckdb
            stop.set()
            time.sleep(5)
        except KeyboardInterrupt:
            stop.set()
            os._exit(130 if hasattr(sys.modules.get("duckdb"), "connect") else 3)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.returncode == 130, out.stderr[-2000:]
