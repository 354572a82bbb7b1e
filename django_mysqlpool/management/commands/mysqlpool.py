"""manage.py mysqlpool: each pooled alias's settings and this process's pool statistics; --check asks the server."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_mysqlpool import conf, get_stats
from django_mysqlpool.checks import check_server, pooled_aliases


class Command(BaseCommand):
    help = "Show each pooled alias's pool settings and statistics; --check connects and checks them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
        parser.add_argument(
            "--check", action="store_true",
            help="connect once per alias, report the server's limits, and exit 1 if the pool does not fit them",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report: dict[str, dict[str, Any]] = {}
        problems: list[str] = []
        for alias in pooled_aliases():
            report[alias] = entry = self._settings(alias)
            if options["check"]:
                entry.update(self._server(alias))
                for message in check_server(databases=[alias]):
                    problems.append(f"{message.id}: {message.msg}")
            stats = get_stats(alias)
            entry["stats"] = stats.get(alias) or {}
        if options["check"]:
            report_problems = {"problems": problems}
        else:
            report_problems = {}
        if options["json"]:
            self.stdout.write(json.dumps({"aliases": report, **report_problems}, indent=2, default=str))
        else:
            self._print_table(report, problems if options["check"] else None)
        if problems:
            raise CommandError(f"{len(problems)} problem(s) found", returncode=1)

    def _settings(self, alias: str) -> dict[str, Any]:
        pool_cls = conf.pool_class()
        per_alias = (settings.DATABASES[alias].get("OPTIONS") or {}).get("pool")
        arguments, options = conf.split_arguments(pool_cls, conf.pool_arguments(alias, per_alias), alias)
        database = settings.DATABASES[alias]
        return {
            "server": f"{database.get('USER')}@{database.get('HOST') or 'localhost'}:"
                      f"{database.get('PORT') or 3306}/{database.get('NAME')}",
            "pool": pool_cls.__name__,
            "arguments": {**{"pool_size": 5, "max_overflow": 10, "timeout": 30}, **arguments},
            "options": {name: getattr(options, name) for name in conf.OWN_ARGUMENTS},
        }

    def _server(self, alias: str) -> dict[str, Any]:
        from django.db import connections

        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT VERSION(), @@GLOBAL.max_connections, @@SESSION.wait_timeout")
            version, max_connections, wait_timeout = cursor.fetchone()
        connections[alias].close()
        return {"server_version": version, "max_connections": max_connections, "wait_timeout": wait_timeout}

    def _print_table(self, report: dict[str, dict[str, Any]], problems: list[str] | None) -> None:
        if not report:
            self.stdout.write("No alias of DATABASES uses django_mysqlpool.backends.mysqlpool.")
            return
        for alias, entry in report.items():
            self.stdout.write(self.style.MIGRATE_HEADING(f"{alias}: {entry['pool']} on {entry['server']}"))
            sections = {
                "settings": list(entry["arguments"].items()) + list(entry["options"].items()),
                "server": [(name, entry[name]) for name in ("server_version", "max_connections", "wait_timeout")
                           if name in entry],
                "statistics of this process (get_stats())": list(entry["stats"].items()),
            }
            width = max(len(name) for rows in sections.values() for name, _ in rows)
            for title, rows in sections.items():
                if rows:
                    self.stdout.write(f"  {title}:")
                for name, value in rows:
                    self.stdout.write(f"    {name:<{width}}  {value}")
        if problems is not None:
            if problems:
                for problem in problems:
                    self.stdout.write(self.style.WARNING(problem))
            else:
                self.stdout.write(self.style.SUCCESS("The pools fit the server's limits."))
