"""Which statements the give-back must treat as changing the session (pure logic, no server).

The behaviour itself (a reset undoing each of these) is proven against the
server in test_lifecycle.py; this pins the classification, including the
fast substring pre-check in front of the marker regex.
"""

import pytest

from django_mysqlpool import statements
from django_mysqlpool.statements import PLAIN_START, SESSION_MARKERS, changes_session

ORM_QUERY = (
    "SELECT `shop_product`.`id`, `shop_product`.`name`, `shop_product`.`locked_at` "
    "FROM `shop_product` INNER JOIN `shop_category` ON (`shop_product`.`category_id` = "
    "`shop_category`.`id`) WHERE (`shop_category`.`slug` = %s) ORDER BY `shop_product`.`id` LIMIT 21"
)

PLAIN = [
    "SELECT 1",
    ORM_QUERY,
    "select @@session.transaction_isolation",
    "INSERT INTO `t` (`a`) VALUES (%s)",
    "UPDATE `t` SET `flushed` = %s WHERE `id` = %s",
    "SELECT `id` FROM `t` WHERE `id` = %s FOR UPDATE",
    "/* request 42 */ SELECT 1",
    "CREATE TABLE `prepared_handlers` (`id` integer)",
    b"SELECT 1",
]
SESSION_CHANGING = [
    "SET @a = 1",
    "SELECT @a := 1",
    "SELECT GET_LOCK('x', 0)",
    "select get_lock('x', 0)",
    "CREATE TEMPORARY TABLE `t` (`id` integer)",
    "SELECT 1; SET SESSION sql_mode = ''",
    "SELECT /*!50000 1 */",
    "/* c */ SET SESSION wait_timeout = 5",
    "FLUSH TABLES WITH READ LOCK",
    "LOCK TABLES `t` WRITE",
    "USE other",
    "CALL p()",
    "HANDLER `t` OPEN",
    "PREPARE s FROM 'SELECT 1'",
    "BEGIN NOT ATOMIC SET SESSION sql_mode = ''; END",
    "begin not atomic select 1 end",
    "/*M! SET SESSION wait_timeout = ( */ SELECT 77 /*M! ) */",
    "/*M!100100 SET @a = 1 */ SELECT 1",
    "/*m! set session sql_mode = '' */",
    "/* a comment */ /*M! SET @a = 1 */",
    "SELECT 1 /*M!100100 , SLEEP(0) */",
    "SELECT LAST_INSERT_ID(5)",
    "SELECT LAST_INSERT_ID/**/(5)",
    "SELECT LAST_INSERT_ID # c\n(5)",
]


@pytest.mark.parametrize("query", PLAIN)
def test_plain_statements_leave_the_session_alone(query):
    assert changes_session(query) is False


@pytest.mark.parametrize("query", SESSION_CHANGING)
def test_session_changing_statements_are_noticed(query):
    assert changes_session(query) is True


@pytest.mark.parametrize("query", PLAIN + SESSION_CHANGING)
def test_the_fast_pre_check_agrees_with_the_full_regex(query):
    text = query.decode() if isinstance(query, bytes) else query
    full = PLAIN_START.match(text) is None or SESSION_MARKERS.search(text) is not None
    assert changes_session(query) is full


def test_verdicts_are_cached_for_short_texts_only():
    short = "SELECT `id` FROM `t` WHERE `id` = %s /* cache me */"
    long = "INSERT INTO `t` (`a`) VALUES " + ", ".join(["(%s)"] * 2000)
    assert changes_session(short) is False and changes_session(long) is False
    assert short in statements.verdicts
    assert long not in statements.verdicts
    assert changes_session(short) is False  # from the cache, same answer
