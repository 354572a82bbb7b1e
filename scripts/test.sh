#!/usr/bin/env bash
# The import-layer contracts and mypy, then the whole test suite on 2 processes (the default session:
# .venv, with mysqlclient), then noxfile.py's "ci" sessions: the release artefacts (python -m build,
# twine check --strict, the wheel alone running the demo) and the oldest and newest combinations of
# the version matrix, on each driver. Each pytest worker starts a private MariaDB unless MYSQL_HOST
# (with MYSQL_PORT, MYSQL_USER, MYSQL_PASSWORD) names one.
# Extra arguments go to pytest, and then only the default session runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The package's layers (.importlinter): imports go one way, with no cycles.
.venv/bin/lint-imports --no-cache
# Its types, with django-stubs (mypy.ini).
.venv/bin/mypy
.venv/bin/python -m pytest -n 2 tests "$@"
if [ $# -eq 0 ]; then
  # A missing interpreter is an error, not a session quietly skipped.
  .venv/bin/nox --error-on-missing-interpreters -t ci
fi
