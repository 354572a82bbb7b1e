"""Settings of the sample project: one pooled alias on the server named by MYSQL_*."""

import os

from tests.server import ServerAddress

DATABASES = {"default": ServerAddress.from_environment().django_database(os.environ["PROJECT_DATABASE"])}
MYSQLPOOL_ARGUMENTS = {"pool_size": 2, "max_overflow": 2, "timeout": 10}
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "shop"]
SECRET_KEY = "sample-project"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
