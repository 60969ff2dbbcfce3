"""Database helpers shared by the apps."""

from contextlib import contextmanager

import psycopg
from django.db import connection


@contextmanager
def binding_cursor():
    """A server-side-binding psycopg cursor on Django's PostgreSQL connection, inside its transaction.

    ``cur.execute(sql, params, prepare=True)`` prepares a fixed statement once per pooled connection
    (settings' ``CONSOLE_DB_PREPARE``), so a hot path pays its parse and plan once, not per request.
    """
    with connection.cursor() as wrapper, psycopg.Cursor(wrapper.cursor.connection) as cur:
        yield cur
