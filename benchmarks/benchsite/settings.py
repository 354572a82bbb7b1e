"""Settings of the benchmark site: one alias on the engine named by BENCH_ENGINE."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from benchmarks.bench import database_settings  # noqa: E402
from tests.server import ServerAddress  # noqa: E402

_engines = database_settings(ServerAddress.from_environment(), measure="http_")
DATABASES = {"default": _engines[os.environ["BENCH_ENGINE"]]}
MYSQLPOOL_ARGUMENTS = {"pool_size": 10, "max_overflow": 10, "timeout": 30}
INSTALLED_APPS = ["benchmarks.benchsite"]
ROOT_URLCONF = "benchmarks.benchsite.urls"
ALLOWED_HOSTS = ["*"]
SECRET_KEY = "benchmark"
USE_TZ = True
DEBUG = False
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
MIDDLEWARE = []
