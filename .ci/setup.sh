#!/usr/bin/env bash
# Install everything redoline's demo and tests need on a fresh Debian/Ubuntu machine, then
# create .venv with the package and its dev tools. Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
    need+=(mariadb-server mariadb-client)
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    need+=(postgresql)
fi
if ! python3 -m venv --help >/dev/null 2>&1; then
    need+=(python3-venv)
fi
# fault tests: network namespaces (ship partition), iptables (10 % packet loss), immutable
# directories (unwritable trail), small tmpfs mounts (disk full); bench/ship compares with openssl's own TLS copy
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v chattr >/dev/null 2>&1 || need+=(e2fsprogs)
command -v mount >/dev/null 2>&1 || need+=(mount)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# the ODBC source (docs/source-odbc.md): unixODBC, and the drivers its tests go through
command -v odbcinst >/dev/null 2>&1 || need+=(unixodbc)
odbcinst -q -d -n "PostgreSQL Unicode" >/dev/null 2>&1 || need+=(odbc-postgresql)
odbcinst -q -d -n "MariaDB Unicode" >/dev/null 2>&1 || need+=(odbc-mariadb)
# FreeTDS: the SQL Server connector's driver path (tests/connectors/test_sqlserver_driver.py)
odbcinst -q -d -n "FreeTDS" >/dev/null 2>&1 || need+=(tdsodbc)
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
    # the Debian packages start default instances; redoline starts its own and needs neither
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# setuptools prints an "Editable installation ... folders with the same name as your package"
# notice on every editable install of a flat layout (the top-level folders are the packages:
# connectors/, capture/, ...); it is informational only (setuptools' InformationOnly), so it
# is filtered by its message here and every other warning still shows
PYTHONWARNINGS="ignore:Editable installation" .venv/bin/python -m pip install -q -e '.[dev]'
echo "setup: done ($(.venv/bin/python --version), redoline $(.venv/bin/redoline --version 2>/dev/null || echo installed))"
