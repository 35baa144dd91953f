"""Admission under a storm (issue 13; cpms/ocpp/throttle.py HandshakeQueue): a bounded number of handshakes do
their checks at once, a bounded number wait in arrival order, the rest are refused at once with 503."""

import asyncio
import logging

import pytest

from cpms.ocpp import consumers
from cpms.ocpp.throttle import HandshakeQueue, QueueFull
from stations.models import ChargingStation
from tests.factories import DEFAULT_STATION_PASSWORD, ChargingStationFactory
from tests.ocpp.test_consumer import basic, communicator


@pytest.fixture
def bounds(settings):
    settings.OCPP_HANDSHAKES_IN_FLIGHT = 2
    settings.OCPP_HANDSHAKE_BACKLOG = 1
    return settings


def test_in_flight_then_waiting_in_order_then_refused(bounds):
    queue = HandshakeQueue()
    order: list[str] = []

    async def scenario():
        release = asyncio.Event()

        async def handshake(name: str) -> str:
            try:
                async with queue.slot():
                    order.append(name)
                    await release.wait()
            except QueueFull:
                return f"{name}: refused"
            return f"{name}: done"

        first = [asyncio.ensure_future(handshake(name)) for name in ("a", "b", "c")]
        await asyncio.sleep(0.05)
        in_flight_then = list(order)
        waiting_then = queue.waiting
        refused = await handshake("d")  # two in flight, one waiting: the backlog is full
        release.set()
        results = await asyncio.gather(*first)
        later = await handshake("e")  # the queue drained: admitted again
        return in_flight_then, waiting_then, refused, results, later

    in_flight_then, waiting_then, refused, results, later = asyncio.run(scenario())
    assert (in_flight_then, waiting_then) == (["a", "b"], 1)
    assert refused == "d: refused"
    assert results == ["a: done", "b: done", "c: done"]
    assert order == ["a", "b", "c", "e"] and later == "e: done"
    assert queue.waiting == 0


def test_a_cancelled_waiter_leaves_the_backlog(bounds):
    bounds.OCPP_HANDSHAKES_IN_FLIGHT = 1
    queue = HandshakeQueue()

    async def scenario():
        release = asyncio.Event()

        async def holder():
            async with queue.slot():
                await release.wait()

        async def waiter():
            async with queue.slot():
                pass

        held = asyncio.ensure_future(holder())
        await asyncio.sleep(0.01)
        gone = asyncio.ensure_future(waiter())
        await asyncio.sleep(0.01)
        waiting_before = queue.waiting
        gone.cancel()  # the charger hung up while waiting
        await asyncio.gather(gone, return_exceptions=True)
        waiting_after = queue.waiting
        release.set()
        await held
        async with queue.slot():
            pass
        return waiting_before, waiting_after

    assert asyncio.run(scenario()) == (1, 0)


@pytest.mark.django_db(transaction=True)
def test_a_handshake_past_the_backlog_gets_503_with_retry_after_and_changes_nothing(
    settings, monkeypatch, caplog
):
    settings.OCPP_HANDSHAKES_IN_FLIGHT = 1
    settings.OCPP_HANDSHAKE_BACKLOG = 0
    monkeypatch.setattr(consumers, "handshake_queue", HandshakeQueue())
    monkeypatch.setattr(consumers, "queue_full_log", consumers.QueueFullLog())
    ChargingStationFactory(identity="CP-STORM")

    async def scenario():
        release = asyncio.Event()

        async def busy():
            async with consumers.handshake_queue.slot():
                await release.wait()

        occupying = asyncio.ensure_future(busy())
        await asyncio.sleep(0.01)
        comm = communicator("CP-STORM", headers=[basic("CP-STORM", DEFAULT_STATION_PASSWORD)])
        await comm.send_input({"type": "websocket.connect"})
        start = await comm.receive_output(timeout=5)
        body = await comm.receive_output(timeout=5)
        release.set()
        await occupying
        return start, body

    with caplog.at_level(logging.WARNING, logger="cpms.ocpp.consumers"):
        start, body = asyncio.run(scenario())
    assert start["status"] == 503
    assert (b"retry-after", b"10") in start["headers"]
    assert b"retry later" in body["body"]
    assert ChargingStation.objects.get(identity="CP-STORM").is_connected is False
    warnings = [r.getMessage() for r in caplog.records if "handshake queue full" in r.getMessage()]
    assert len(warnings) == 1 and "1 handshake(s) refused" in warnings[0]


def test_a_turn_that_comes_too_late_is_refused(bounds):
    """A handshake that waited OCPP_HANDSHAKE_QUEUE_WAIT_S for its turn is refused rather than served after
    the server's connect deadline."""
    bounds.OCPP_HANDSHAKES_IN_FLIGHT = 1
    bounds.OCPP_HANDSHAKE_QUEUE_WAIT_S = 0.05
    queue = HandshakeQueue()

    async def scenario():
        release = asyncio.Event()

        async def holder():
            async with queue.slot():
                await release.wait()

        held = asyncio.ensure_future(holder())
        await asyncio.sleep(0.01)
        try:
            async with queue.slot():
                outcome = "served"
        except QueueFull:
            outcome = "refused"
        waiting = queue.waiting
        release.set()
        await held
        return outcome, waiting

    assert asyncio.run(scenario()) == ("refused", 0)


@pytest.mark.django_db(transaction=True)
def test_a_handshake_that_ends_before_the_accept_leaves_the_station_offline(monkeypatch, caplog):
    """The server gave up on the handshake while its checks ran (uvicorn's connect deadline answers 503 and
    then refuses the late accept): the connection recorded meanwhile is closed again, nothing is held, no
    ERROR."""
    station = ChargingStationFactory(identity="CP-LATE-ACCEPT")

    async def refused_accept(self, subprotocol=None, headers=None):
        raise RuntimeError("Unexpected ASGI message 'websocket.accept', after sending 'websocket.close'")

    monkeypatch.setattr(consumers.OcppConsumer, "accept", refused_accept)
    monkeypatch.setattr(consumers, "held", consumers.held.__class__())

    async def scenario():
        comm = communicator("CP-LATE-ACCEPT", headers=[basic("CP-LATE-ACCEPT", DEFAULT_STATION_PASSWORD)])
        await comm.send_input({"type": "websocket.connect"})
        nothing = await comm.receive_nothing(timeout=0.5)
        await comm.send_input({"type": "websocket.disconnect", "code": 1006})
        await comm.wait(timeout=5)
        return nothing, dict(consumers.held.by_station)

    with caplog.at_level(logging.INFO, logger="cpms.ocpp.consumers"):
        nothing, held = asyncio.run(scenario())
    station.refresh_from_db()
    assert (nothing, held) == (True, {})
    assert (station.is_connected, station.connection_id) == (False, "")
    assert any("ended before it was accepted" in r.getMessage() for r in caplog.records)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_a_refusal_after_the_server_gave_up_on_the_handshake_is_no_error(caplog):
    """uvicorn's connect deadline answered 503 already: our own refusal then finds the handshake over."""
    sent = []

    async def send(message):
        sent.append(message["type"])
        raise RuntimeError(
            "Unexpected ASGI message 'websocket.http.response.start', after sending 'websocket.close'"
        )

    scope = {"extensions": {"websocket.http.response": {}}}
    with caplog.at_level(logging.INFO, logger="cpms.ocpp.consumers"):
        asyncio.run(consumers.refuse(scope, send, 503, "busy"))
    assert sent == ["websocket.http.response.start"]
    assert any("refusal 503 not sent" in r.getMessage() for r in caplog.records)
