"""Faults and bad input through the CLI in a subprocess: one line, a documented exit code,
never a traceback (exit 70), nothing lost; and trail files private whatever the umask."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import duckdb
import pymysql
import pytest

from connectors.endpoint import Endpoint
from tests.clirun import first_error, redoline, small_fs

pytestmark = pytest.mark.mariadb


def _url(db: Endpoint) -> str:
    return f"mariadb://root@{db.host}:{db.port}/{db.database}"


def _fill(db: Endpoint, rows: int, pad: int = 900) -> None:
    conn = pymysql.connect(host=db.host, port=db.port, user="root", database=db.database)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS f (id INT PRIMARY KEY, pad TEXT)")
        cur.execute("SELECT COALESCE(MAX(id), 0) FROM f")
        start = int(cur.fetchone()[0])  # type: ignore[index]
        for lo in range(start, start + rows, 500):
            cur.executemany(
                "INSERT INTO f VALUES (%s, %s)",
                [
                    (i + 1, os.urandom(pad // 2).hex())
                    for i in range(lo, min(lo + 500, start + rows))
                ],
            )
            conn.commit()
    conn.close()


def test_trail_directory_is_a_file(mysql_db: Endpoint, tmp_path: Path) -> None:
    (tmp_path / "trail").write_text("not a directory")
    proc = redoline(
        "capture", "--source", _url(mysql_db), "--trail", "trail", "--until-caught-up", cwd=tmp_path
    )
    assert proc.returncode == 9, proc.stderr
    assert "trail" in first_error(proc)


def test_trail_directory_not_writable(mysql_db: Endpoint, tmp_path: Path) -> None:
    trail = tmp_path / "trail"
    trail.mkdir()
    # root ignores permission bits: an immutable directory refuses even root
    subprocess.run(["chattr", "+i", str(trail)], check=True)
    try:
        proc = redoline(
            "capture",
            "--source",
            _url(mysql_db),
            "--trail",
            "trail",
            "--until-caught-up",
            cwd=tmp_path,
        )
    finally:
        subprocess.run(["chattr", "-i", str(trail)], check=True)
    assert proc.returncode == 9, proc.stderr
    line = first_error(proc)
    assert str(trail) in line and "not permitted" in line


def test_trail_disk_full_then_resume_loses_nothing(mysql_db: Endpoint, tmp_path: Path) -> None:
    url = _url(mysql_db)
    with small_fs(tmp_path / "fs", "1m") as fs:
        trail = fs / "trail"
        first = redoline(
            "capture", "--source", url, "--trail", str(trail), "--until-caught-up", cwd=tmp_path
        )
        assert first.returncode == 0, first.stderr
        _fill(mysql_db, 3000)  # ~2.7 MB of row images: more than the filesystem holds
        full = redoline(
            "capture", "--source", url, "--trail", str(trail), "--until-caught-up", cwd=tmp_path
        )
        assert full.returncode == 9, full.stderr
        assert "No space left on device" in first_error(full)
        subprocess.run(["mount", "-o", "remount,size=64m", str(fs)], check=True)
        again = redoline(
            "capture", "--source", url, "--trail", str(trail), "--until-caught-up", cwd=tmp_path
        )
        assert again.returncode == 0, again.stderr
        target = tmp_path / "t.duckdb"
        applied = redoline(
            "apply",
            "--trail",
            str(trail),
            "--target",
            f"duckdb://{target}",
            "--until-caught-up",
            cwd=tmp_path,
        )
        assert applied.returncode == 0, applied.stderr
    with duckdb.connect(str(target), read_only=True) as conn:
        assert conn.execute(
            f'SELECT count(*), count(DISTINCT id) FROM "{mysql_db.database}".f'
        ).fetchone() == (3000, 3000)


def test_duckdb_target_disk_full_then_resume(mysql_db: Endpoint, tmp_path: Path) -> None:
    url = _url(mysql_db)
    trail = tmp_path / "trail"
    assert (
        redoline(
            "capture", "--source", url, "--trail", str(trail), "--until-caught-up", cwd=tmp_path
        ).returncode
        == 0
    )
    _fill(mysql_db, 4000)
    assert (
        redoline(
            "capture", "--source", url, "--trail", str(trail), "--until-caught-up", cwd=tmp_path
        ).returncode
        == 0
    )
    with small_fs(tmp_path / "fs", "1m") as fs:
        target = f"duckdb://{fs}/t.duckdb"
        full = redoline(
            "apply", "--trail", str(trail), "--target", target, "--until-caught-up", cwd=tmp_path
        )
        assert full.returncode == 9, full.stderr
        assert "cannot write DuckDB file" in first_error(full)
        subprocess.run(["mount", "-o", "remount,size=256m", str(fs)], check=True)
        again = redoline(
            "apply", "--trail", str(trail), "--target", target, "--until-caught-up", cwd=tmp_path
        )
        assert again.returncode == 0, again.stderr
        with duckdb.connect(str(fs / "t.duckdb"), read_only=True) as conn:
            count = conn.execute(
                f'SELECT count(*), count(DISTINCT id) FROM "{mysql_db.database}".f'
            ).fetchone()
    assert count == (4000, 4000)


def test_trail_and_state_files_are_private_whatever_the_umask(
    mysql_db: Endpoint, tmp_path: Path
) -> None:
    _fill(mysql_db, 10)
    target = f"duckdb://{tmp_path}/t.duckdb"
    proc = redoline(
        "sync",
        "--source",
        _url(mysql_db),
        "--target",
        target,
        "--trail",
        "trail",
        "--until-caught-up",
        cwd=tmp_path,
        umask=0o000,
    )
    assert proc.returncode == 0, proc.stderr
    _fill(mysql_db, 10)
    assert (
        redoline(
            "sync",
            "--source",
            _url(mysql_db),
            "--target",
            target,
            "--trail",
            "trail",
            "--until-caught-up",
            cwd=tmp_path,
            umask=0o000,
        ).returncode
        == 0
    )
    made = [
        tmp_path / "trail",
        *(tmp_path / "trail").rglob("*"),
        tmp_path / ".redoline",
        *(tmp_path / ".redoline").rglob("*"),
    ]
    assert len(made) > 4
    exposed = [str(p) for p in made if p.lstat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)]
    assert exposed == []
    # and check warns about a trail someone made readable
    os.chmod(tmp_path / "trail", 0o755)
    check = redoline("check", "--source", _url(mysql_db), "--trail", "trail", cwd=tmp_path)
    assert "trail privacy" in check.stdout and "chmod -R go-rwx" in check.stdout, check.stdout


def test_check_without_a_source_is_not_all_clear(tmp_path: Path) -> None:
    proc = redoline("check", "--target", f"duckdb://{tmp_path}/t.duckdb", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "All prerequisites met" not in proc.stdout
    assert "none configured" in proc.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("apply", "--parallel", "0"),
        ("apply", "--parallel", "-3"),
        ("snapshot", "--workers", "0"),
        ("verify", "--chunk-rows", "0"),
        ("trail", "dump", "--trail", "t", "--from-op", "0"),
    ],
)
def test_out_of_range_options_are_refused(args: tuple[str, ...], tmp_path: Path) -> None:
    proc = redoline(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "range" in proc.stderr or "Invalid value" in proc.stderr


def test_config_values_out_of_range_are_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "r.toml"
    cfg.write_text('[apply]\nparallel = 0\n[target]\nurl = "duckdb:///tmp/x.duckdb"\n')
    proc = redoline("apply", "-c", str(cfg), "--until-caught-up", cwd=tmp_path)
    assert proc.returncode == 2
    assert "parallel" in first_error(proc) and "at least 1" in first_error(proc)


def test_quiet_and_verbose_together_are_refused(tmp_path: Path) -> None:
    proc = redoline("-q", "-v", "status", cwd=tmp_path)
    assert proc.returncode == 2
    assert "contradict" in first_error(proc)


def test_global_options_after_the_subcommand(tmp_path: Path) -> None:
    # the crontab line of docs/snapshot-and-sync.md puts -q last
    proc = redoline("trail", "stats", "--trail", str(tmp_path / "none"), "-q", cwd=tmp_path)
    assert "No such option" not in proc.stderr
    both = redoline("trail", "stats", "--trail", "none", "--debug", "-vv", cwd=tmp_path)
    assert "No such option" not in both.stderr


def test_include_pattern_that_matches_nothing_is_refused(
    mysql_db: Endpoint, tmp_path: Path
) -> None:
    _fill(mysql_db, 3)
    db = mysql_db.database
    target = f"duckdb://{tmp_path}/t.duckdb"
    for pattern, suggestion in ((f"{db[:-1]}.*", f"{db}.*"), (f"{db}.g", f"{db}.f")):
        cfg = tmp_path / "typo.toml"
        cfg.write_text(f'[tables]\ninclude = ["{pattern}"]\n')
        proc = redoline(
            "sync",
            "-c",
            str(cfg),
            "--source",
            _url(mysql_db),
            "--target",
            target,
            "--trail",
            "trail",
            "--until-caught-up",
            cwd=tmp_path,
        )
        assert proc.returncode == 2, proc.stderr
        assert pattern in first_error(proc)
        assert f"did you mean {suggestion}" in proc.stderr
    # a database with no table yet is not a typo: allowed, with a warning
    conn = pymysql.connect(host=mysql_db.host, port=mysql_db.port, user="root")
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{db}_empty`")
    try:
        cfg.write_text(f'[tables]\ninclude = ["{db}_empty.*"]\n')
        proc = redoline(
            "capture",
            "-c",
            str(cfg),
            "--source",
            _url(mysql_db),
            "--trail",
            "trail2",
            "--until-caught-up",
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        assert "matches no table yet" in proc.stderr
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE `{db}_empty`")
        conn.close()


def test_a_trail_of_one_engine_refuses_another_engine(
    mysql_db: Endpoint, pg_db: Endpoint, tmp_path: Path
) -> None:
    _fill(mysql_db, 3)
    first = redoline(
        "capture", "--source", _url(mysql_db), "--trail", "trail", "--until-caught-up", cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr
    pg_url = f"postgresql://postgres@{pg_db.host}:{pg_db.port}/{pg_db.database}"
    other = redoline(
        "capture", "--source", pg_url, "--trail", "trail", "--until-caught-up", cwd=tmp_path
    )
    assert other.returncode == 7, other.stderr
    line = first_error(other)
    assert "mariadb" in line.lower() and "postgresql" in line.lower()
    assert mysql_db.database in line and pg_db.database in line
