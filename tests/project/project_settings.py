"""Settings of the sample project: one pooled alias on the server named by MYSQL_*."""

import os

DATABASES = {
    "default": {
        "ENGINE": "django_mysqlpool.backends.mysqlpool",
        "HOST": os.environ["MYSQL_HOST"],
        "PORT": os.environ.get("MYSQL_PORT", "3306"),
        "USER": os.environ.get("MYSQL_USER", "root"),
        "PASSWORD": os.environ.get("MYSQL_PASSWORD", ""),
        "NAME": os.environ["PROJECT_DATABASE"],
    }
}
MYSQLPOOL_ARGUMENTS = {"pool_size": 2, "max_overflow": 2, "timeout": 10}
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "shop"]
SECRET_KEY = "sample-project"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
