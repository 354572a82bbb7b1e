#!/usr/bin/env bash
# The import-layer contracts, mypy and the documentation, then the whole test suite on 2 processes
# (the default session: .venv, with mysqlclient), then noxfile.py's "ci" sessions: the release
# artefacts (python -m build, twine check --strict, the wheel alone running the demo) and the oldest
# and newest combinations of the version matrix, on each driver. Each pytest worker starts a private
# MariaDB unless MYSQL_HOST (with MYSQL_PORT, MYSQL_USER, MYSQL_PASSWORD) names one.
# Extra arguments go to pytest, and then only the default session runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The package's layers (.importlinter): imports go one way, with no cycles.
.venv/bin/lint-imports --no-cache
# Its types, with django-stubs (mypy.ini).
.venv/bin/mypy
# The documentation (docs/, README included): any Sphinx warning fails, and
# the README must render as PyPI renders it. Built outside the tree.
docs_build=$(mktemp -d)
trap 'rm -rf "$docs_build"' EXIT
.venv/bin/sphinx-build -W --keep-going -q -b html docs "$docs_build"
.venv/bin/python -W ignore::UserWarning -m readme_renderer README.rst -o /dev/null
rm -rf "$docs_build"
trap - EXIT
# Tests that share one costly fixture (a Galera cluster, a fault campaign) carry an
# xdist_group mark: each group runs on one worker, so the fixture is made once.
.venv/bin/python -m pytest -n 2 --dist loadgroup tests "$@"
if [ $# -eq 0 ]; then
  # The oldest and newest sessions need Python 3.10 and 3.13 (pyenv's, on
  # this project's machines). Where both exist a missing interpreter is an
  # error, never a session quietly skipped; where they do not (a plain
  # Debian 12 has 3.11 only), the release build still runs, and this says so.
  have_python() {
    command -v "python$1" >/dev/null 2>&1 ||
      { command -v pyenv >/dev/null 2>&1 && pyenv versions --bare 2>/dev/null | grep -q "^$1\."; }
  }
  if have_python 3.10 && have_python 3.13; then
    .venv/bin/nox --error-on-missing-interpreters -t ci
  else
    echo "test.sh: Python 3.10 and 3.13 not found (pyenv install 3.10 3.13): the version matrix's" \
      "oldest and newest sessions are not run here; the release build and its demo are." >&2
    .venv/bin/nox -s package
  fi
fi
