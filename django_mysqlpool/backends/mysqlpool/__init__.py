"""Django's MySQL backend, with connect() and close() routed through a pool."""

from .driver import load_driver

# Runs before base.py imports Django's MySQL backend, whose own guard speaks
# to mysqlclient users only.
load_driver()
