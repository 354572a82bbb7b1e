"""Which SQL statements may leave state in a session that a rollback does not clear.

Pure: no driver, no server. The cursors (cursors.py) ask changes_session()
about every statement they run; a True answer makes the give-back reset the
session (lifecycle.give_back).
"""

from __future__ import annotations

import re
from typing import Any

# A statement may leave state in the session that ROLLBACK does not clear
# (user and session variables, named, table and global locks, temporary
# tables, prepared statements, handlers, another default database, whatever a
# procedure does) unless, after any leading comments, it starts with one of
# these words and contains none of the markers below. Matched on the text
# before parameters are bound; a false positive costs one reset round trip.
# Executable comments (MySQL's /*! ... */, MariaDB's /*M! ... */) are code
# the server runs: never skipped as comments, always a marker.
PLAIN_START = re.compile(
    r"\s*(?:(?:/\*(?!M?!).*?\*/|--[^\n]*(?:\n|$)|#[^\n]*(?:\n|$))\s*)*"
    r"(?:SELECT|INSERT|UPDATE|DELETE|REPLACE|WITH|BEGIN|START|COMMIT|ROLLBACK|SAVEPOINT|"
    r"RELEASE|SHOW|EXPLAIN|DESCRIBE|DESC|CREATE|ALTER|DROP|TRUNCATE|RENAME|ANALYZE|"
    r"OPTIMIZE|CHECK|CHECKSUM)\b",
    re.IGNORECASE | re.DOTALL,
)
SESSION_MARKERS = re.compile(
    r"(?<!@)@(?!@)|;|/\*M?!|\bNOT\s+ATOMIC\b|\bLAST_INSERT_ID\b(?!\s*\(\s*\))|"
    r"\b(?:GET_LOCK|TEMPORARY|HANDLER|PREPARE|FLUSH|BACKUP|LOCK)\b",
    re.IGNORECASE,
)
# What no session reset undoes: COM_RESET_CONNECTION keeps the profiling
# history (SHOW PROFILES: the text of earlier statements). Searched only in
# statements already found to change the session.
RESET_PROOF = re.compile(r"\bPROFILING\b", re.IGNORECASE)
# Substrings every marker contains. Plain substring tests are far cheaper
# than the marker regex, which tries each alternative at each position of
# an ORM query: the regex runs only on the rare text holding one of these.
_MARKER_HINTS = (
    "@", ";", "/*!", "/*M!", "ATOMIC", "LOCK", "TEMPORARY", "HANDLER", "PREPARE", "FLUSH", "BACKUP",
    "LAST_INSERT_ID",
)

# Verdicts on recent statement texts. The ORM sends the same few texts over
# and over (parameters are bound later), so most statements cost a lookup.
# cursors.py reads it directly on its hot path (see _watching_class there).
verdicts: dict[Any, bool] = {}
MAX_VERDICTS = 2048
MAX_CACHED_LENGTH = 4096


def changes_session(query: Any) -> bool:
    """False if the statement leaves no state in the session that a rollback would not clear."""
    try:
        return verdicts[query]
    except (KeyError, TypeError):  # TypeError: a bytearray, which cannot be a key
        pass
    verdict = classify(query)
    # Long texts (a bulk INSERT's) are rarely sent twice and would make the
    # cache large.
    if len(query) <= MAX_CACHED_LENGTH and not isinstance(query, bytearray):
        if len(verdicts) >= MAX_VERDICTS:
            verdicts.clear()  # simpler than an LRU, and a miss costs only microseconds
        verdicts[query] = verdict
    return verdict


def defeats_reset(query: Any) -> bool:
    """True if the statement changes the session in a way no reset undoes (the give-back closes it)."""
    if isinstance(query, (bytes, bytearray)):
        query = bytes(query).decode("utf-8", "replace")
    return RESET_PROOF.search(query) is not None


def classify(query: Any) -> bool:
    """changes_session() without the cache."""
    if isinstance(query, (bytes, bytearray)):
        query = bytes(query).decode("utf-8", "replace")
    if PLAIN_START.match(query) is None:
        return True
    upper = query.upper()
    for hint in _MARKER_HINTS:
        if hint in upper:
            return SESSION_MARKERS.search(query) is not None
    return False
