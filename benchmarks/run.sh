#!/usr/bin/env bash
# The benchmark (benchmarks/bench.py) against MYSQL_HOST, or a private
# MariaDB started for it. Installs the peer it compares against first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pip install -q -r benchmarks/requirements.txt
if ! command -v wrk >/dev/null; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get install -y -qq wrk >/dev/null || { $sudo apt-get update -qq && $sudo apt-get install -y -qq wrk >/dev/null; }
fi
exec .venv/bin/python -m tests.server -- .venv/bin/python benchmarks/bench.py "$@"
