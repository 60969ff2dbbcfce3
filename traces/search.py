"""A bound on the free-text search over runs and spans.

The search (``q`` in the API, "text in spans" on the runs page) matches span text with ``icontains``,
which no index serves: over a long time range it reads every span. On PostgreSQL it runs under
``statement_timeout`` = RUNS_SEARCH_TIMEOUT_MS, and a cancelled search is answered with advice to narrow
it instead of a 500 (or a worker held for minutes).
"""

from contextlib import contextmanager

import psycopg.errors
from django.conf import settings
from django.db import OperationalError, connection, transaction

TIMEOUT_HINT = "This search took too long; narrow the time range (or other filters) and search again."


class SearchTimedOut(Exception):
    """The search ran past RUNS_SEARCH_TIMEOUT_MS and was cancelled."""


@contextmanager
def bounded_search(active: bool = True):
    """Run the block's queries under RUNS_SEARCH_TIMEOUT_MS; raise SearchTimedOut when one is cancelled.

    The block runs in its own transaction (a savepoint inside an outer one) so that ``SET LOCAL`` ends with
    it; the previous timeout is put back for the rest of an outer transaction. No-op when not ``active``,
    on SQLite, or with a timeout of 0.
    """
    timeout_ms = settings.RUNS_SEARCH_TIMEOUT_MS
    if not active or timeout_ms <= 0 or connection.vendor != "postgresql":
        yield
        return
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT current_setting('statement_timeout'), "
                               "set_config('statement_timeout', %s, true)", [f"{int(timeout_ms)}ms"])
                previous = cursor.fetchone()[0]
            yield
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])
    except OperationalError as exc:
        if isinstance(exc.__cause__, psycopg.errors.QueryCanceled):
            raise SearchTimedOut(TIMEOUT_HINT) from exc
        raise
