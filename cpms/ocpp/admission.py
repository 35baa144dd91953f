"""Admission on group commit: the database work of a charger's handshake and close, shared by every
connection of this process (cpms/ocpp/batching.py).

In a reconnect storm each handshake used to cost its own worker-thread hop and transaction for the station
lookup, another for the connection's bookkeeping, and one more at the close. Here concurrent handshakes
share them: one query looks up every station whose charger is waiting (`station_auth`), one transaction
records every connection opened meanwhile (`connection_opened`), one every close (`connection_closed`).
Each caller gets exactly what the single-item service returns (stations/services/ocpp.py), and only after
its batch committed, so a charger is never accepted on bookkeeping that could still roll back.
"""

from datetime import datetime

from cpms.ocpp.batching import GroupCommit
from stations.services.ocpp import (
    StationConnection,
    StationDisconnection,
    station_auths_get,
    stations_connected,
    stations_disconnected,
)
from stations.types import StationAuth, StationConnected, StationDisconnected


def _station_auths(*, items: list[str]) -> list[StationAuth | None]:
    found = station_auths_get(identities=items)
    return [found.get(identity) for identity in items]


# A lookup holds a handshake up and costs the database little: its batch waits less for company.
auth_reader: GroupCommit[str, StationAuth | None] = GroupCommit(_station_auths, max_wait_s=0.002)
connections_opened: GroupCommit[StationConnection, tuple[StationConnected]] = GroupCommit(stations_connected)
connections_closed: GroupCommit[StationDisconnection, tuple[StationDisconnected, ...]] = GroupCommit(
    stations_disconnected
)


async def station_auth(identity: str) -> StationAuth | None:
    """stations.services.ocpp.station_auth_get, batched with the other handshakes' lookups (one query).
    None for an unknown identity (the caller decides on auto-registration)."""
    return await auth_reader.submit(identity)


async def connection_opened(
    *, station_id: int, connection_id: str, protocol: str, at: datetime
) -> tuple[StationConnected]:
    """station_connected (the newest connection names the station, its offline incident is resolved), in
    a transaction shared with the other connections opened meanwhile; returns its outcomes once committed."""
    item = StationConnection(station_id=station_id, connection_id=connection_id, protocol=protocol, at=at)
    return await connections_opened.submit(item)


async def connection_closed(
    *, station_id: int, connection_id: str, at: datetime, reason: str = ""
) -> tuple[StationDisconnected, ...]:
    """station_disconnected (nothing changes, and () is returned, when a newer connection took over), in a
    transaction shared with the other closes meanwhile; returns its outcomes once committed."""
    item = StationDisconnection(station_id=station_id, connection_id=connection_id, at=at, reason=reason)
    return await connections_closed.submit(item)
