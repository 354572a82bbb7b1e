"""The version matrix: each Django, SQLAlchemy and driver on each Python that supports them.

    nox -l                        every session, named by what it tests
    nox -s "tests(python3.13, django6.1, sqlalchemy2.1, pymysql)"
    nox -t ci                     the lowest and the newest combinations (.ci/run)
    nox -t tests                  the whole matrix (docs/matrix.rst says how long)

Each session makes its own virtual environment with the package and one
driver, and runs the suite on 2 processes against a private MariaDB (or the
server MYSQL_HOST names). docs/matrix.rst says more.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

import nox

if sys.version_info >= (3, 11):
    import tomllib
else:  # nox itself may run on 3.10
    tomllib = None

from packaging.requirements import Requirement

ROOT = pathlib.Path(__file__).parent
nox.options.default_venv_backend = "venv"
nox.options.sessions = []  # a bare `nox` lists nothing to run by mistake: name a session or a tag
nox.options.download_python = "never"  # only the interpreters this machine has

# Which Pythons each release supports (its own metadata says the same).
DJANGO_PYTHONS = {"5.2": ("3.10", "3.11", "3.12", "3.13"), "6.0": ("3.12", "3.13"), "6.1": ("3.12", "3.13")}
SQLALCHEMY_PYTHONS = {"2.0": ("3.10", "3.11", "3.12", "3.13"), "2.1": ("3.11", "3.12", "3.13")}
DRIVERS = ("mysqlclient", "pymysql")
DRIVER_PACKAGES = {"mysqlclient": "mysqlclient", "pymysql": "PyMySQL"}
OLDEST_PYTHON, NEWEST_PYTHON = "3.10", "3.13"


def _pyenv_interpreters() -> None:
    """Let nox find every Python that pyenv holds, not only the ones `pyenv global` names.

    pyenv's shims run a version only if it is selected; PYENV_VERSION may
    select several, the current one first so that `python3` stays what it was.
    """
    if "PYENV_VERSION" in os.environ:
        return
    try:
        current = subprocess.run(["pyenv", "version-name"], capture_output=True, text=True,
                                 timeout=30, check=True).stdout.strip()
        installed = subprocess.run(["pyenv", "versions", "--bare", "--skip-aliases"], capture_output=True,
                                   text=True, timeout=30, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return
    os.environ["PYENV_VERSION"] = ":".join([current, *(v for v in installed if v != current)])


_pyenv_interpreters()


def _metadata() -> dict:
    if tomllib is None:
        raise RuntimeError("reading pyproject.toml needs Python 3.11 or newer to run nox")
    with open(ROOT / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["project"]


def _floor(requirement: str) -> str:
    """`name==lowest`: the lowest version a requirement of the metadata allows."""
    parsed = Requirement(requirement)
    lowest = [spec.version for spec in parsed.specifier if spec.operator == ">="]
    if not lowest:
        raise RuntimeError(f"{requirement!r} in pyproject.toml has no lower bound to test")
    return f"{parsed.name}=={lowest[0]}"


def _floors(driver: str) -> list[str]:
    """The lowest Django, SQLAlchemy and driver that pyproject.toml allows."""
    metadata = _metadata()
    return [_floor(r) for r in metadata["dependencies"] + metadata["optional-dependencies"][driver]]


def _run_suite(session: nox.Session, driver: str, *pins: str) -> None:
    """Install the package with one driver and run the whole suite on 2 processes."""
    # The gevent tests and tests/sites/pymysql_app.py use PyMySQL whatever
    # the driver; a PyMySQL session must not have mysqlclient to fall back on.
    extras = "mysqlclient,pymysql" if driver == "mysqlclient" else "pymysql"
    session.install(f".[{extras},test-tools]", *pins)
    if driver == "pymysql":
        # As a PyMySQL project does in manage.py and wsgi.py, but for every
        # process of this environment: the suite starts sites, gunicorn and
        # celery workers. mysqlclient must not be there to be found instead.
        session.run("python", "-c", "import importlib.util, sys; "
                    "sys.exit(importlib.util.find_spec('MySQLdb') is not None)", silent=True)
        purelib = session.run("python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                              silent=True).strip()
        pathlib.Path(purelib, "mysqlpool_pymysql_as_mysqldb.pth").write_text(
            "import pymysql; pymysql.install_as_MySQLdb()\n")
    session.run("python", "-c", "import django, sqlalchemy, MySQLdb, sys; "
                "print('Python', sys.version.split()[0], 'Django', django.__version__, 'SQLAlchemy', "
                "sqlalchemy.__version__, 'MySQLdb', MySQLdb.__name__, MySQLdb.version_info)")
    # The Galera tests (two 3-node clusters, about two minutes) run in the
    # default session only: what they prove is the pool's node logic, which
    # the tests on single servers as nodes (test_cluster*.py) cover here.
    session.run("python", "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-m", "not galera", "tests",
                *session.posargs,
                env={"MYSQLPOOL_TEST_DRIVER": driver})


def _matrix() -> list:
    cells = []
    for django, django_pythons in DJANGO_PYTHONS.items():
        for sqlalchemy, sqlalchemy_pythons in SQLALCHEMY_PYTHONS.items():
            for python in django_pythons:
                if python not in sqlalchemy_pythons:
                    continue
                for driver in DRIVERS:
                    tags = []
                    if (python, django, sqlalchemy) == (NEWEST_PYTHON, "6.1", "2.1"):
                        tags = ["ci", "newest"]
                    cells.append(nox.param(python, django, sqlalchemy, driver, tags=tags,
                                           id=f"python{python}, django{django}, sqlalchemy{sqlalchemy}, {driver}"))
    return cells


@nox.session(tags=["tests"])
@nox.parametrize("python, django, sqlalchemy, driver", _matrix())
def tests(session: nox.Session, django: str, sqlalchemy: str, driver: str) -> None:
    """The suite on the newest release of one Django series, SQLAlchemy series and driver."""
    _run_suite(session, driver, f"Django~={django}.0", f"SQLAlchemy~={sqlalchemy}.0")


def _lowest_ids(driver: str) -> str:
    return ", ".join([f"python{OLDEST_PYTHON}", *(pin.replace("==", "") for pin in _floors(driver))]).lower()


@nox.session(python=OLDEST_PYTHON, tags=["ci", "lowest"])
@nox.parametrize("driver", [nox.param(driver, id=_lowest_ids(driver)) for driver in DRIVERS])
def lowest(session: nox.Session, driver: str) -> None:
    """The suite on the lowest Python, Django, SQLAlchemy and driver that pyproject.toml allows."""
    _run_suite(session, driver, *_floors(driver))


@nox.session(python=NEWEST_PYTHON, tags=["lowest"])
def lowest_pymysql_newest_django(session: nox.Session) -> None:
    """The lowest PyMySQL the metadata allows, on the newest Django (which checks the driver's version)."""
    newest_django = "6.1"
    _run_suite(session, "pymysql", _floors("pymysql")[-1], f"Django~={newest_django}.0")


@nox.session(python=False, tags=["ci", "package"])
def package(session: nox.Session) -> None:
    """The sdist and wheel build, pass twine check --strict, and the wheel alone runs the demo.

    The wheel goes into a fresh virtual environment; the demo runs from a
    directory holding only examples/, the private-server helper
    (tests/server.py) and the benchmark's request cycle it imports
    (benchmarks/bench.py), so the package can only come from the wheel.
    """
    with tempfile.TemporaryDirectory(prefix="mysqlpool-package-") as scratch:
        dist = os.path.join(scratch, "dist")
        session.run(sys.executable, "-m", "build", "--outdir", dist, str(ROOT), silent=True)
        artifacts = sorted(os.path.join(dist, name) for name in os.listdir(dist))
        session.run(sys.executable, "-m", "twine", "check", "--strict", *artifacts)
        wheel = next(path for path in artifacts if path.endswith(".whl"))

        venv = os.path.join(scratch, "venv")
        session.run(sys.executable, "-m", "venv", venv)
        python = os.path.join(venv, "bin", "python")
        session.run(python, "-m", "pip", "install", "-q", f"{wheel}[mysqlclient]")

        demo = pathlib.Path(scratch, "demo")
        (demo / "examples").mkdir(parents=True)
        (demo / "tests").mkdir()
        (demo / "examples" / "demo.py").write_bytes((ROOT / "examples" / "demo.py").read_bytes())
        (demo / "tests" / "__init__.py").write_text("")
        (demo / "tests" / "server.py").write_bytes((ROOT / "tests" / "server.py").read_bytes())
        # The demo's request cycle is the benchmark's (benchmarks/bench.py).
        (demo / "benchmarks").mkdir()
        for name in ("__init__.py", "bench.py", "pinning.py"):
            (demo / "benchmarks" / name).write_bytes((ROOT / "benchmarks" / name).read_bytes())
        session.chdir(demo)
        # Where the package comes from, printed: the wheel's copy in the venv.
        session.run(python, "-c", "import django_mysqlpool, sys; print(django_mysqlpool.__version__, "
                    "django_mysqlpool.__file__); sys.exit(not django_mysqlpool.__file__.startswith(sys.prefix))",
                    env={"PYTHONPATH": ""})
        session.run(python, "-m", "tests.server", "--", python, "examples/demo.py",
                    env={"PYTHONPATH": ""})
