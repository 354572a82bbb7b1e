#!/usr/bin/env bash
# The import-layer contracts and mypy, then the whole test suite on 2 processes. Each worker starts a private MariaDB
# unless MYSQL_HOST (with MYSQL_PORT, MYSQL_USER, MYSQL_PASSWORD) names one.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The package's layers (.importlinter): imports go one way, with no cycles.
.venv/bin/lint-imports --no-cache
# Its types, with django-stubs (mypy.ini).
.venv/bin/mypy
# Tests that share one costly fixture (a Galera cluster, a fault campaign) carry an
# xdist_group mark: each group runs on one worker, so the fixture is made once.
exec .venv/bin/python -m pytest -n 2 --dist loadgroup tests "$@"
