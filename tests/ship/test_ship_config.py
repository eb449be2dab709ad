"""`[ship]` / `[receive]` drive the commands; a typo in them is an error, not ignored."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.ship.conftest import ENTRY, Certs, digests, first_error, write_trail


def _run(
    cwd: Path, config: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ENTRY, *args, "-c", str(config)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_config_sections_with_a_token_from_the_environment(tmp_path: Path, certs: Certs) -> None:
    trail = tmp_path / "src"
    write_trail(trail, 1, 80, seal=True)
    d = certs.dir
    port = 20000 + os.getpid() % 20000
    recv_cfg = tmp_path / "recv.toml"
    recv_cfg.write_text(
        f'[receive]\nlisten = "127.0.0.1:{port}"\ndir = "{tmp_path / "recv"}"\n'
        f'sources = ["src"]\ncert = "{d}/server.pem"\nkey = "{d}/server.key"\n'
        'token_env = "RECV_TOKEN"\n'
    )
    ship_cfg = tmp_path / "ship.toml"
    ship_cfg.write_text(
        f'[trail]\ndir = "{trail}"\n[ship]\nto = "127.0.0.1:{port}"\nname = "dr1"\n'
        f'ca = "{d}/ca.pem"\ntoken_env = "SHIP_TOKEN"\n'
    )
    receiver = subprocess.Popen(
        [*ENTRY, "receive", "--until-caught-up", "-c", str(recv_cfg)],
        cwd=tmp_path,
        env={**os.environ, "RECV_TOKEN": "s3cret"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            done = _run(
                tmp_path, ship_cfg, "ship", "--until-caught-up", env={"SHIP_TOKEN": "s3cret"}
            )
            if done.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)  # the receiver may still be starting
        assert done.returncode == 0, done.stderr
        assert "(dr1)" in done.stdout
        _, err = receiver.communicate(timeout=30)
        assert receiver.returncode == 0, err
        assert "s3cret" not in err and "s3cret" not in done.stderr
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.communicate()
    assert digests(tmp_path / "recv" / "src") == digests(trail)
    assert (trail / "consumers" / "ship.dr1.json").exists()


def test_unknown_key_and_plain_address_are_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "r.toml"
    cfg.write_text('[receive]\nlisten = "127.0.0.1:7433"\ncertfile = "x"\n')
    bad = _run(tmp_path, cfg, "receive", "--trail", str(tmp_path / "r"))
    assert bad.returncode == 2
    assert "[receive.certfile] unknown key 'certfile'" in first_error(bad.stderr)
    cfg.write_text('[ship]\nto = "nohost"\n')
    bad = _run(tmp_path, cfg, "ship", "--trail", str(tmp_path))
    assert bad.returncode == 2
    assert "is not HOST:PORT" in first_error(bad.stderr)
    cfg.write_text('[receive]\nretry_for = "soon"\n')
    bad = _run(tmp_path, cfg, "receive", "--trail", str(tmp_path / "r"), "--until-caught-up")
    assert bad.returncode == 2
    assert "receive.retry_for" in first_error(bad.stderr)
