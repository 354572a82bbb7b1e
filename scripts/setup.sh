#!/usr/bin/env bash
# Makes this checkout ready to run: Debian's build headers for mysqlclient
# and (unless MYSQL_HOST names a server) MariaDB's server binaries, then a
# virtual environment in .venv with the package and its test tools.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
pkg-config --exists libmariadb 2>/dev/null || missing+=(libmariadb-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
if [ -z "${MYSQL_HOST:-}" ]; then
  # The private test server needs mariadbd and mariadb-install-db; the
  # test runner's database cloning needs mariadb-dump; time-zone tables
  # need tzdata.
  [ -x /usr/sbin/mariadbd ] || command -v mariadbd >/dev/null || missing+=(mariadb-server)
  command -v mariadb-dump >/dev/null || missing+=(mariadb-client)
  [ -d /usr/share/zoneinfo/Europe ] || missing+=(tzdata)
  # The clustering tests start a 3-node Galera cluster (tests/cluster.py),
  # whose nodes copy state with rsync.
  [ -e /usr/lib/galera/libgalera_smm.so ] || missing+=(galera-4)
  command -v rsync >/dev/null || missing+=(rsync)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
if ! .venv/bin/python -c "import django_mysqlpool, MySQLdb, pymysql, sqlalchemy, pytest, xdist, pytest_timeout, pytest_django, gunicorn, gevent, celery, uvicorn, importlinter, mypy, django_stubs_ext, opentelemetry.sdk, sphinx, furo, readme_renderer, nox, build, twine" 2>/dev/null; then
  echo "setup: installing Python packages into .venv" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test]"
fi
