"""Live status events are sent in batches per group (cpms/portal/live.py; issue 13): a storm of boots and
statuses costs one channel-layer message per group per LIVE_BATCH_S, not one per event, and nothing is lost or
reordered on the way to the browser (tests/portal/test_live_status.py has the browser's side)."""

import asyncio

import pytest
from channels.layers import InMemoryChannelLayer

from cpms.portal import live


class CountingLayer(InMemoryChannelLayer):
    sent: list[tuple[str, dict]] = []

    async def group_send(self, group, message):
        type(self).sent.append((group, message))
        return await super().group_send(group, message)


@pytest.fixture
def layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": f"{__name__}.CountingLayer"}}
    CountingLayer.sent = []
    live._batches.clear()
    yield CountingLayer
    live._batches.clear()


def event(n: int) -> dict:
    return live.status_event(identity="CP-1", evse_id=1, connector_id=1, status=f"S{n}", at=str(n))


def test_a_burst_is_one_message_per_group_in_order(layer, settings):
    settings.LIVE_BATCH_S = 0.1

    async def burst():
        for n in range(10):
            await live.live_publish(organisation_id=1, site_id=7, event=event(n))
        await live.live_publish(organisation_id=1, site_id=None, event=event(99))
        assert layer.sent == []  # gathered, not yet sent
        await asyncio.sleep(0.3)

    asyncio.run(burst())
    assert [(group, [e["status"] for e in message["events"]]) for group, message in layer.sent] == [
        ("live.site.7", [f"S{n}" for n in range(10)]),
        ("live.org.1", ["S99"]),
    ]
    assert {message["type"] for _, message in layer.sent} == {"live.events"}


def test_without_batching_each_event_goes_at_once(layer, settings):
    settings.LIVE_BATCH_S = 0

    async def two():
        await live.live_publish(organisation_id=1, site_id=7, event=event(1))
        await live.live_publish(organisation_id=1, site_id=7, event=event(2))

    asyncio.run(two())
    assert [[e["status"] for e in message["events"]] for _, message in layer.sent] == [["S1"], ["S2"]]


def test_a_group_that_cannot_be_sent_keeps_only_the_newest_events(layer, settings, monkeypatch):
    settings.LIVE_BATCH_S = 60  # never flushed during the test
    monkeypatch.setattr(live, "MAX_BATCH", 3)

    async def many():
        for n in range(5):
            await live.live_publish(organisation_id=1, site_id=7, event=event(n))

    asyncio.run(many())
    assert [e["status"] for e in live._batches["live.site.7"]] == ["S2", "S3", "S4"]
