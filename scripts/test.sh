#!/usr/bin/env bash
# The whole test suite, on 2 processes. Each worker starts a private MariaDB
# unless MYSQL_HOST (with MYSQL_PORT, MYSQL_USER, MYSQL_PASSWORD) names one.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -n 2 tests "$@"
