"""One EVSE with a connector, id tokens and a session per tenant, next to the standing `world` of
tests/conftest.py: the objects the API and admin scope tests look for."""

from dataclasses import dataclass

from tests.factories import ChargingSessionFactory, ConnectorFactory, EvseFactory, IdTokenFactory
from tests.support import at


@dataclass
class Tenants:
    evse_a1: object
    connector_a1: object
    token_a: object
    token_a_group: object
    token_b: object
    session_a1: object
    session_a2: object
    session_b1: object

    def objects(self, world) -> dict[str, object]:
        """Every scoped object by name, for the cross-tenant matrix."""
        return {
            "site_a1": world.site_a1,
            "site_a2": world.site_a2,
            "site_b1": world.site_b1,
            "station_a1": world.station_a1,
            "station_a2": world.station_a2,
            "station_b1": world.station_b1,
            "token_a": self.token_a,
            "token_a_group": self.token_a_group,
            "token_b": self.token_b,
            "session_a1": self.session_a1,
            "session_a2": self.session_a2,
            "session_b1": self.session_b1,
        }


def tenants_make(world) -> Tenants:
    evse = EvseFactory(station=world.station_a1, evse_id=1, max_power_w=22000)
    # OCPP numbers far from the row ids, so that a serializer showing a foreign key instead of the
    # EVSE/connector number cannot pass.
    evse.evse_id = evse.pk + 100
    evse.save()
    connector = ConnectorFactory(
        evse=evse,
        connector_type="cType2",
        max_power_w=22000,
        status="Available",
        status_changed_at=at(7),
    )
    connector.connector_id = connector.pk + 200
    connector.save()
    token_a_group = IdTokenFactory(organisation=world.org_a, value="FLEET-A", type="Central")
    token_a = IdTokenFactory(organisation=world.org_a, value="AAAA0001", group=token_a_group)
    token_b = IdTokenFactory(organisation=world.org_b, value="BBBB0001")
    session_a1 = ChargingSessionFactory(
        station=world.station_a1,
        evse=evse,
        connector=connector,
        transaction_id="1001",
        id_tag="AAAA0001",
        id_token=token_a,
        started_at=at(8),
        stopped_at=at(9),
        meter_start_wh=1000,
        meter_stop_wh=8500,
        energy_wh=7500,
        status="completed",
        stop_reason="Local",
        flags=["clock_skew"],
    )
    session_a2 = ChargingSessionFactory(
        station=world.station_a2, transaction_id="2001", id_tag="AAAA0001", started_at=at(10)
    )
    session_b1 = ChargingSessionFactory(
        station=world.station_b1,
        transaction_id="3001",
        id_tag="BBBB0001",
        id_token=token_b,
        started_at=at(11),
    )
    return Tenants(
        evse_a1=evse,
        connector_a1=connector,
        token_a=token_a,
        token_a_group=token_a_group,
        token_b=token_b,
        session_a1=session_a1,
        session_a2=session_a2,
        session_b1=session_b1,
    )
