"""The PostgreSQL backend's checkout test: a pooled connection the server closed is recognised without a
query; a healthy one costs no round trip and is kept (cpms/db_backends/postgresql/base.py)."""

import time

import psycopg
import pytest
from django.db import connection

from cpms.db_backends.postgresql.base import closed_by_server
from tests.e2e.conftest import database_url

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only")


@pytest.fixture
def pooled_like(db):
    """A connection like the pool's (autocommit, idle), on the test database, and its backend pid."""
    with psycopg.connect(database_url(connection.settings_dict), autocommit=True) as conn:
        yield conn, conn.info.backend_pid


def test_a_healthy_idle_connection_is_kept(pooled_like):
    conn, _pid = pooled_like
    assert closed_by_server(conn) is False
    assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_connection_the_server_terminated_is_recognised(pooled_like):
    conn, pid = pooled_like
    # What a restart does to every backend: terminated with "terminating connection due to administrator
    # command" and the socket closed.
    with psycopg.connect(database_url(connection.settings_dict), autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)
    deadline = time.monotonic() + 5
    while not closed_by_server(conn):
        assert time.monotonic() < deadline, "the terminated connection still looks usable"
        time.sleep(0.01)
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")


def test_a_closed_connection_is_recognised(pooled_like):
    conn, _pid = pooled_like
    conn.close()
    assert closed_by_server(conn) is True
