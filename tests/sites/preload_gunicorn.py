"""gunicorn settings for tests/sites/preload_site.py: report from the master at exit."""


def on_exit(server):
    from tests.sites.preload_site import write_report

    write_report()
