"""manage.py migrate and manage.py test on a project whose ENGINE is the pool."""

import os
import subprocess
import sys

import pytest

from tests.helpers import admin_connection

PROJECT = os.path.join(os.path.dirname(__file__), "project")


@pytest.fixture
def project_database():
    name = os.environ["MYSQLPOOL_TEST_DATABASE"] + "_project"
    with admin_connection() as admin:
        cursor = admin.cursor()
        for database in (name, "test_" + name):
            cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
        cursor.execute(f"CREATE DATABASE `{name}`")
    yield name
    with admin_connection() as admin:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")


def _run_in_project(database, *command):
    environment = {**os.environ, "PROJECT_DATABASE": database}
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environment["PYTHONPATH"] = os.pathsep.join([PROJECT, root, environment.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, *command],
        cwd=PROJECT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,  # a DROP DATABASE stuck on a pooled connection's lock would hang here
    )


def _manage(database, *arguments):
    return _run_in_project(database, "manage.py", *arguments)


def _databases(admin):
    cursor = admin.cursor()
    cursor.execute("SHOW DATABASES")
    return {row[0] for row in cursor.fetchall()}


def test_migrate_creates_the_tables(project_database):
    result = _manage(project_database, "migrate", "--noinput")
    assert result.returncode == 0, result.stdout + result.stderr
    with admin_connection() as admin:
        cursor = admin.cursor()
        cursor.execute(f"SHOW TABLES FROM `{project_database}` LIKE 'shop_item'")
        assert cursor.fetchall()


def test_manage_py_test_creates_and_destroys_the_test_database(project_database):
    result = _manage(project_database, "test", "shop", "--noinput", "-v", "2")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Ran 3 tests" in output
    assert "Destroying test database" in output
    with admin_connection() as admin:
        assert "test_" + project_database not in _databases(admin)


def test_manage_py_test_parallel_clones_and_destroys_each_worker_database(project_database):
    result = _manage(project_database, "test", "shop", "--parallel", "2", "--noinput", "-v", "2")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Ran 3 tests" in output
    for suffix in ("_1", "_2", ""):
        assert f"Destroying test database for alias 'default' ('test_{project_database}{suffix}')" in output
    with admin_connection() as admin:
        assert not {d for d in _databases(admin) if d.startswith("test_" + project_database)}


def test_pytest_django_with_xdist_gives_each_worker_a_database_and_drops_it(project_database):
    pytest_django = pytest.importorskip("pytest_django")
    assert pytest_django
    result = _run_in_project(
        project_database, "-m", "pytest", "-c", "pytest.ini", "--rootdir", ".",
        "--confcutdir", ".", "-n", "2", "-q", "shop/tests.py",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "3 passed" in output
    with admin_connection() as admin:
        assert not {d for d in _databases(admin) if d.startswith("test_" + project_database)}
