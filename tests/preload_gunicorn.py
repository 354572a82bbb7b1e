"""gunicorn settings for tests/preload_site.py: report from the master at exit."""


def on_exit(server):
    from tests.preload_site import write_report

    write_report()
