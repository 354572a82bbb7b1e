#!/usr/bin/env bash
# The demo (examples/demo.py) against MYSQL_HOST, or a private MariaDB
# started for it and stopped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m tests.server -- .venv/bin/python examples/demo.py
