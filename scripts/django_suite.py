"""Run Django's own database tests on this engine (or on the stock one, to compare).

    .venv/bin/python scripts/django_suite.py [--engine stock] [--parallel 2] [LABEL ...]

Django's sdist ships its test suite (tests/runtests.py); this downloads the
sdist of the installed Django version into .django-tests/, starts a private
MariaDB unless MYSQL_HOST names a server, loads its time-zone tables, and runs
the labels below (about 3,800 tests) with a settings module whose ENGINE is
django_mysqlpool's. It prints runtests' last line and exits with its status.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tarfile

import django

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.server import PrivateServer, ServerAddress  # noqa: E402

LABELS = (
    "backends basic transactions queries schema migrations introspection "
    "model_fields expressions aggregation db_functions timezones fixtures"
).split()
ENGINES = {
    "pool": "django_mysqlpool.backends.mysqlpool",
    "stock": "django.db.backends.mysql",
}
SUITE_TIMEOUT = 1800  # seconds

SETTINGS_TEMPLATE = """\
import os

# The version's own settings (SECRET_KEY, hashers, USE_TZ, and the
# DEFAULT_AUTO_FIELD its migrations expect: AutoField before Django 6.0).
from test_sqlite import *  # noqa: F401,F403

def _alias(name):
    return {{
        "ENGINE": {engine!r},
        "HOST": os.environ["MYSQL_HOST"],
        "PORT": os.environ["MYSQL_PORT"],
        "USER": os.environ["MYSQL_USER"],
        "PASSWORD": os.environ["MYSQL_PASSWORD"],
        "NAME": name,
        "TEST": {{"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_general_ci"}},
    }}

DATABASES = {{"default": _alias("django_default"), "other": _alias("django_other")}}
MYSQLPOOL_ARGUMENTS = {{"pool_size": 5, "max_overflow": 10, "timeout": 30}}
"""


def django_tests_directory() -> str:
    """Django's tests/ folder for the installed version, downloaded once."""
    version = django.__version__
    base = os.path.join(ROOT, ".django-tests")
    # Older sdists unpack into Django-X.Y, newer ones into django-X.Y.Z.
    extracted = glob.glob(os.path.join(base, f"[dD]jango-{version}", "tests"))
    if extracted:
        return extracted[0]
    os.makedirs(base, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
         f"django=={version}", "-d", base],
        check=True,
        timeout=600,
    )
    archive = glob.glob(os.path.join(base, f"[dD]jango-{version}.tar.gz"))[0]
    with tarfile.open(archive) as sdist:
        members = [m for m in sdist.getmembers() if "/tests/" in m.name or m.name.endswith("/tests")]
        sdist.extractall(base, members=members, filter="data")
    return glob.glob(os.path.join(base, f"[dD]jango-{version}", "tests"))[0]


def load_time_zone_tables(address: ServerAddress) -> None:
    sql = subprocess.run(
        ["mysql_tzinfo_to_sql", "/usr/share/zoneinfo"],
        capture_output=True, check=True, timeout=300,
    ).stdout
    subprocess.run(
        ["mariadb", f"--host={address.host}", f"--port={address.port}",
         f"--user={address.user}", f"--password={address.password}", "mysql"],
        input=sql, check=True, timeout=300, capture_output=True,
    )


def run(address: ServerAddress, engine: str, parallel: int, labels: list[str]) -> int:
    tests = django_tests_directory()
    settings_name = f"test_mysqlpool_{engine}"
    with open(os.path.join(tests, settings_name + ".py"), "w") as settings:
        settings.write(SETTINGS_TEMPLATE.format(engine=ENGINES[engine]))
    load_time_zone_tables(address)
    environment = {
        **os.environ,
        **address.environment(),
        "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-W", "ignore", "runtests.py", f"--settings={settings_name}",
               f"--parallel={parallel}", "--noinput", *labels]
    result = subprocess.run(command, cwd=tests, env=environment, capture_output=True,
                            text=True, timeout=SUITE_TIMEOUT)
    log_path = os.path.join(ROOT, ".django-tests", f"last-run-{engine}.log")
    with open(log_path, "w") as log:
        log.write(result.stdout + result.stderr)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    ran = [line for line in lines if line.startswith("Ran ")]
    verdict = [line for line in lines if line.startswith(("OK", "FAILED"))]
    print(f"Django {django.__version__}, engine {ENGINES[engine]}: "
          f"{ran[-1] if ran else 'no tests ran'}: {verdict[-1] if verdict else lines[-1:]}")
    print(f"(full log: {os.path.relpath(log_path, ROOT)})")
    return result.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=sorted(ENGINES), default="pool")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("labels", nargs="*", default=LABELS)
    options = parser.parse_args()
    address = ServerAddress.from_environment()
    if address is not None:
        return run(address, options.engine, options.parallel, options.labels)
    with PrivateServer() as server:
        return run(server.address, options.engine, options.parallel, options.labels)


if __name__ == "__main__":
    sys.exit(main())
