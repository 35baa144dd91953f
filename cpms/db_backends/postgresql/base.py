"""Django's PostgreSQL backend, with a pool that does not hand out connections the server has closed.

After a PostgreSQL restart every idle connection in the pool is dead, and psycopg_pool finds out only when
one is used: the first messages after the database returned failed (issue 15). Django's remedy,
`CONN_HEALTH_CHECKS` with a pool, runs a query on every checkout (a round trip per OCPP batch) and, worse,
sleeps between dead connections with psycopg_pool's backoff (1, 2, 4 s...): in the restart drill the first
messages then waited out the pool timeout (10 s) and failed anyway.

Here, at checkout: a connection that is idle has nothing to read unless the server spoke. A PostgreSQL that
shuts down (fast or immediate) or terminates a backend sends an error and closes the socket, so the socket
is readable; only then is the connection pinged (`check_connection`, which also reads a harmless
asynchronous message), and a dead one is closed and handed back (the pool drops it and opens another) and
the next is taken at once. Cost of a healthy checkout: one `poll()` system call. Not caught: a connection
whose server vanished without closing it (host gone, network cut); its first query fails and it leaves the
pool, as before.
"""

import select

from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool


def closed_by_server(connection) -> bool:
    """True when an idle pooled connection can no longer be used (see the module docstring)."""
    if connection.closed or connection.broken:
        return True
    poller = select.poll()  # not select.select: a server with 10,000 charger sockets has fds past 1024
    poller.register(connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    if not poller.poll(0):
        return False
    try:
        ConnectionPool.check_connection(connection)
    except Exception:
        return True
    return False


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        pool = self.pool
        if pool is None:
            return connection
        # Bounded: at most every connection the pool holds is dead (a restart); the next getconn() then
        # waits for a new one, which the pool opens when the database accepts connections again.
        for _ in range(pool.max_size):
            if not closed_by_server(connection):
                return connection
            connection.close()
            pool.putconn(connection)
            connection = super().get_new_connection(conn_params)
        return connection
