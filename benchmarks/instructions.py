"""Instructions per request cycle, counted by valgrind: a measure noise cannot move.

Timings on a shared machine drift by 10% and more between runs; the number
of instructions a cycle executes does not (within about 1,000 of 160,000).
For each engine, the cycle of benchmarks/bench.py (ensure_connection,
SELECT 1, request end) runs under ``valgrind --tool=callgrind`` twice, for
SHORT and LONG cycles; the difference divided by LONG - SHORT is the cost
of one cycle, with start-up and warm-up cancelled out. Kernel work (the
round trip itself) is not counted: this measures the Python side.

    python -m tests.server -- .venv/bin/python benchmarks/instructions.py [ENGINE ...]

ENGINE is any alias of benchmarks/bench.py, or one followed by ":close"
for the cycle ended by an explicit connection.close() (default:
persistent pool pool:close).
Needs valgrind (Debian's package of that name); takes about a minute.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHORT, LONG = 200, 1200

_RUN_CYCLES = """
import sys
sys.path.insert(0, {root!r})
from benchmarks import bench
from tests.server import ServerAddress
bench.configure(ServerAddress.from_environment())
bench.cycle_block(sys.argv[1], 50)  # warm up: the pool, caches, the verdicts
# A garbage collection falling in one run and not the other would add its
# whole cost (millions of instructions) to one engine; neither engine leaves
# garbage per cycle, so none is due while the cycles run.
import gc, os
gc.collect()
gc.disable()
bench.cycle_block(sys.argv[1], int(sys.argv[2]))
# The same holds for the collections at interpreter exit, whose cost varies
# by millions from run to run: skip them.
os._exit(0)
"""


def instructions(engine: str, cycles: int, program: str = _RUN_CYCLES, extra_environment: dict | None = None,
                 argument: str | None = None) -> int:
    """Instructions valgrind counted for a whole run of cycles on engine.

    program: the Python source run (formatted with root), given argument
    (default: engine) and cycles; extra_environment: added to its environment.
    """
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, "-c", program.format(root=ROOT), argument or engine, str(cycles),
    ]
    if shutil.which("setarch"):
        command = ["setarch", "-R", *command]  # the same addresses every run
    # The same string hashes every run too.
    environment = {**os.environ, "PYTHONHASHSEED": "0", **(extra_environment or {})}
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=environment)
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise RuntimeError(f"valgrind run failed for {engine}:\n{result.stderr[-2000:]}")
    return int(found.group(1))


def per_cycle(engine: str) -> int:
    with ThreadPoolExecutor(2) as runs:  # one per core
        short, long = runs.map(lambda cycles: instructions(engine, cycles), (SHORT, LONG))
    return (long - short) // (LONG - SHORT)


def main(engines: list[str]) -> int:
    if not shutil.which("valgrind"):
        print("valgrind not found: apt-get install valgrind", file=sys.stderr)
        return 2
    if not os.environ.get("MYSQL_HOST"):
        print("MYSQL_HOST is not set: run me through python -m tests.server --", file=sys.stderr)
        return 2
    counts = {engine: per_cycle(engine) for engine in engines}
    floor = counts.get("persistent")
    print(f"{'engine':<12} {'instructions per cycle':>24}  x persistent")
    for engine, count in counts.items():
        ratio = f"{count / floor:.3f}" if floor else "-"
        print(f"{engine:<12} {count:>24,}  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["persistent", "pool", "pool:close"]))
