"""Programs the tests run in subprocesses: sites, apps and worker configurations."""
