"""The outbox (cpms/ocpi/services/outbox.py): in order per object, a partner that is down gets everything once
it is back, refusals are set aside, one worker per partner."""

from datetime import timedelta

import pytest
from django.utils import timezone

from cpms.ocpi.enums import OutboxStatus, PartnerStatus
from cpms.ocpi.models import OcpiOutboxItem, OcpiPartner
from cpms.ocpi.services import outbox
from tests.ocpi.conftest import partner_registered
from tests.ocpi.http_stub import StubPartner, ocpi_ok

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver():
    server = StubPartner().start()
    yield server
    server.stop()


@pytest.fixture
def partner(roaming, receiver):
    partner, _ = partner_registered(roaming.party_a, name="live", base_url=f"{receiver.url}/ocpi/2.2.1")
    return partner


def _queue(partner, key: str, n: int, **extra) -> list[OcpiOutboxItem]:
    return [
        outbox.outbox_enqueue(
            partner=partner,
            module="sessions",
            object_key=key,
            method="PATCH",
            path=f"/NL/AAA/{key}",
            body={"n": i},
            **extra,
        )
        for i in range(n)
    ]


def _due_now() -> None:
    OcpiOutboxItem.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_items_are_delivered_in_order_with_the_token_and_routing_headers(partner, receiver):
    _queue(partner, "s1", 3, to_party=("DE", "EMS"))

    result = outbox.outbox_deliver(partner_id=partner.pk)

    assert (result.delivered, result.failed, result.remaining) == (3, 0, 0)
    assert [(r.method, r.path, r.body) for r in receiver.received] == [
        ("PATCH", "/ocpi/2.2.1/sessions/NL/AAA/s1", {"n": 0}),
        ("PATCH", "/ocpi/2.2.1/sessions/NL/AAA/s1", {"n": 1}),
        ("PATCH", "/ocpi/2.2.1/sessions/NL/AAA/s1", {"n": 2}),
    ]
    headers = receiver.received[0].headers
    assert headers["authorization"].startswith("Token ")
    assert (headers["ocpi-from-country-code"], headers["ocpi-from-party-id"]) == ("NL", "AAA")
    assert (headers["ocpi-to-country-code"], headers["ocpi-to-party-id"]) == ("DE", "EMS")
    assert headers["x-request-id"] and headers["x-correlation-id"]
    assert set(OcpiOutboxItem.objects.values_list("status", flat=True)) == {OutboxStatus.DELIVERED}
    partner.refresh_from_db()
    assert partner.last_success_at is not None


def test_a_partner_that_is_down_gets_everything_in_order_when_it_is_back(partner, receiver):
    receiver.stop()
    _queue(partner, "s1", 2)
    _queue(partner, "s2", 2)

    down = outbox.outbox_deliver(partner_id=partner.pk)
    # One attempt per round while it is down, and every item waits for the back-off.
    assert (down.delivered, down.failed, down.remaining) == (0, 1, 4)
    assert OcpiOutboxItem.objects.filter(next_attempt_at__lte=timezone.now()).count() == 0
    partner.refresh_from_db()
    assert "ConnectError" in partner.last_error
    assert outbox.outbox_deliver(partner_id=partner.pk).delivered == 0  # still backing off

    receiver.start()
    _due_now()
    back = outbox.outbox_deliver(partner_id=partner.pk)

    assert (back.delivered, back.remaining) == (4, 0)
    by_object = {}
    for request in receiver.received:
        by_object.setdefault(request.path, []).append(request.body["n"])
    assert by_object == {"/ocpi/2.2.1/sessions/NL/AAA/s1": [0, 1], "/ocpi/2.2.1/sessions/NL/AAA/s2": [0, 1]}


def test_a_refused_item_holds_its_object_back_then_is_set_aside(partner, receiver, settings):
    settings.OCPI_OUTBOX_REFUSED_ATTEMPTS = 2
    receiver.handler = lambda r: (
        (400, {"status_code": 2001, "status_message": "no"}) if r.body == {"n": 0} else ocpi_ok()
    )
    first, second = _queue(partner, "s1", 2)
    (other,) = _queue(partner, "s2", 1)
    OcpiOutboxItem.objects.filter(pk=other.pk).update(body={"n": 5})

    round1 = outbox.outbox_deliver(partner_id=partner.pk)
    # s1's first item was refused, so s1's second waits; s2 is not held back by it.
    assert (round1.delivered, round1.failed, round1.refused) == (1, 1, 0)
    assert OcpiOutboxItem.objects.get(pk=second.pk).status == OutboxStatus.PENDING

    _due_now()
    round2 = outbox.outbox_deliver(partner_id=partner.pk)
    assert (round2.refused, round2.delivered) == (1, 0)
    refused = OcpiOutboxItem.objects.get(pk=first.pk)
    assert refused.status == OutboxStatus.REFUSED
    assert "OCPI 2001" in refused.last_error

    _due_now()
    round3 = outbox.outbox_deliver(partner_id=partner.pk)
    assert round3.delivered == 1
    assert OcpiOutboxItem.objects.get(pk=second.pk).status == OutboxStatus.DELIVERED

    assert outbox.outbox_summary(partner=partner).refused == 1
    assert outbox.outbox_retry_refused(partner=partner) == 1
    assert OcpiOutboxItem.objects.get(pk=first.pk).status == OutboxStatus.PENDING


def test_a_missing_receiver_endpoint_is_refused_not_retried_forever(partner, settings):
    settings.OCPI_OUTBOX_REFUSED_ATTEMPTS = 1
    OcpiPartner.objects.filter(pk=partner.pk).update(endpoints=[])
    (item,) = _queue(partner, "s1", 1)
    assert outbox.outbox_deliver(partner_id=partner.pk).refused == 1
    item.refresh_from_db()
    assert item.status == OutboxStatus.REFUSED
    assert "no sessions receiver" in item.last_error


def test_only_one_worker_delivers_for_a_partner_at_a_time(partner, receiver):
    _queue(partner, "s1", 1)
    OcpiPartner.objects.filter(pk=partner.pk).update(outbox_lease_until=timezone.now() + timedelta(minutes=1))
    assert outbox.outbox_deliver(partner_id=partner.pk).leased is False
    assert receiver.received == []
    # An expired lease (a worker that died) does not block for ever.
    OcpiPartner.objects.filter(pk=partner.pk).update(outbox_lease_until=timezone.now() - timedelta(seconds=1))
    assert outbox.outbox_deliver(partner_id=partner.pk).delivered == 1
    partner.refresh_from_db()
    assert partner.outbox_lease_until is None


@pytest.mark.parametrize(
    "status", [PartnerStatus.SUSPENDED, PartnerStatus.UNREGISTERED, PartnerStatus.PENDING]
)
def test_nothing_is_sent_to_a_partner_that_is_not_registered(partner, receiver, status):
    _queue(partner, "s1", 1)
    OcpiPartner.objects.filter(pk=partner.pk).update(status=status)
    assert outbox.outbox_deliver(partner_id=partner.pk).remaining == 1
    assert receiver.received == []
    assert outbox.partners_with_due_items() == []


def test_a_command_result_goes_to_its_own_url(partner, receiver):
    outbox.outbox_enqueue(
        partner=partner,
        module="commands",
        object_key="command:1",
        method="POST",
        url=f"{receiver.url}/results/abc",
        body={"result": "ACCEPTED"},
    )
    outbox.outbox_deliver(partner_id=partner.pk)
    assert [(r.method, r.path) for r in receiver.received] == [("POST", "/results/abc")]


def test_enqueueing_kicks_a_delivery_after_commit(partner, django_capture_on_commit_callbacks, monkeypatch):
    kicked = []
    monkeypatch.setattr("cpms.ocpi.tasks.outbox_deliver.delay", kicked.append)
    with django_capture_on_commit_callbacks(execute=True):
        _queue(partner, "s1", 1)
    assert kicked == [partner.pk]


def test_delivered_items_are_purged_after_the_keep_period(partner, receiver):
    _queue(partner, "s1", 2)
    outbox.outbox_deliver(partner_id=partner.pk)
    OcpiOutboxItem.objects.filter(pk=OcpiOutboxItem.objects.first().pk).update(
        delivered_at=timezone.now() - timedelta(days=40)
    )
    assert outbox.outbox_purge_delivered(older_than=timedelta(days=30)) == 1
    assert OcpiOutboxItem.objects.count() == 1


def test_a_sweep_starts_one_delivery_per_partner_not_one_per_item(
    partner, roaming, django_capture_on_commit_callbacks, monkeypatch
):
    kicked = []
    monkeypatch.setattr("cpms.ocpi.tasks.outbox_deliver.delay", kicked.append)
    with django_capture_on_commit_callbacks(execute=True), outbox.kicks_deferred():
        _queue(partner, "s1", 3)
        _queue(roaming.partner_a2, "s2", 2)
    assert sorted(kicked) == sorted([partner.pk, roaming.partner_a2.pk])
    # A block that fails starts nothing.
    kicked.clear()
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        outbox.kicks_deferred(),
    ):
        _queue(partner, "s3", 1)
        raise RuntimeError
    assert kicked == []
