"""Sphinx configuration: the user guide (README) and the pages under docs/, built with -W."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import django  # noqa: E402
from django.conf import settings  # noqa: E402

# autodoc imports the backend, which reads Django's settings: a minimal
# configuration, no database is contacted.
settings.configure(INSTALLED_APPS=["django_mysqlpool"])
django.setup()

from django_mysqlpool import __version__  # noqa: E402

project = "django-mysqlpool"
release = __version__
version = __version__
extensions = ["sphinx.ext.autodoc"]
html_theme = "furo"
html_title = f"django-mysqlpool {release}"
exclude_patterns = ["_build"]
autodoc_member_order = "bysource"
