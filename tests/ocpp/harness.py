"""Drive a ChargePoint with raw frames, as a charger would, and collect what it answers."""

import asyncio
import json

import orjson
import pytest
from django.db import connections

from cpms.ocpp import chargepoint
from cpms.ocpp.chargepoint import StationContext
from cpms.ocpp.message_log import message_log
from stations.models import ChargingStation


class Harness:
    def __init__(self, cp_class, station: ChargingStation):
        self.sent: list[str] = []
        self.cp = cp_class(
            station=StationContext(
                station_id=station.pk,
                identity=station.identity,
                organisation_id=station.organisation_id,
                registration_status=station.registration_status,
            ),
            send=self._send,
        )

    async def _send(self, frame: str) -> None:
        self.sent.append(frame)

    def feed(self, frame) -> list | None:
        """Send one frame (a list is JSON-encoded, a str is sent as is); return the decoded answer."""
        # The stdlib encoder: test payloads may hold integers beyond 64 bits, which orjson refuses.
        raw = frame if isinstance(frame, str) else json.dumps(frame)
        before = len(self.sent)

        async def run():
            await self.cp.route_message(raw)
            await message_log.flush()

        asyncio.run(run())
        answers = self.sent[before:]
        assert len(answers) <= 1
        return orjson.loads(answers[0]) if answers else None

    def call(self, action: str, payload: dict, unique_id: str = "m1") -> list:
        return self.feed([2, unique_id, action, payload])


@pytest.fixture
def inline_db(db, monkeypatch):
    """Run OCPP services inline, inside the test's transaction (rolled back after the test), instead of in
    worker threads with their own connections. The threaded path is covered by the consumer and e2e tests."""

    test_connection = connections["default"]

    async def inline(func, /, **kwargs):
        # asgiref gives async contexts their own connection slot: hand them the test's connection.
        connections["default"] = test_connection
        return func(**kwargs)

    monkeypatch.setattr(chargepoint, "_db_runner", inline)
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
