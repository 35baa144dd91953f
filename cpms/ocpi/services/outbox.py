"""The durable outbox of everything we push to partners (docs/ocpi.md "Delivery").

A push is queued in the same transaction as the change it reports (`outbox_enqueue`), and delivered by Celery
(`cpms.ocpi.tasks.outbox_deliver`) after commit, kicked at once and swept every OCPI_OUTBOX_SWEEP_S:

- in order per object: an item waits while an older undelivered item of its `object_key` exists;
- one worker per partner at a time (a lease on the partner row, taken with a conditional UPDATE), so two
  workers never reorder an object's updates;
- a partner that does not answer (`PartnerUnavailable`) is retried after 1, 2, 4 ... seconds up to
  OCPI_OUTBOX_BACKOFF_MAX_S, without end: it gets everything when it comes back; the round stops at the first
  such failure, so a partner that is down costs one request per back-off, not one per item;
- a partner that refuses an item (`PartnerRefused`: HTTP 4xx or OCPI 2xxx) gets it again up to
  OCPI_OUTBOX_REFUSED_ATTEMPTS times, then the item is set aside as REFUSED for the operator, so that one bad
  object never blocks the others' updates;
- delivery is idempotent on the partner's side: every item is a PUT or PATCH of a whole object or a field set
  (a retry changes nothing twice), or a POST of a CDR or a command result that the partner keys by its id.
"""

import contextlib
import functools
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min, Q
from django.utils import timezone

from cpms.ocpi import client
from cpms.ocpi.enums import InterfaceRole, OutboxStatus, PartnerStatus
from cpms.ocpi.models import OcpiOutboxItem, OcpiPartner

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeliveryRound:
    delivered: int
    failed: int
    refused: int
    remaining: int
    leased: bool


@dataclass(frozen=True, slots=True)
class OutboxSummary:
    backlog: int
    oldest_pending_at: datetime | None
    refused: int
    delivered: int
    last_success_at: datetime | None
    last_error_at: datetime | None
    last_error: str


def outbox_enqueue(
    *,
    partner: OcpiPartner,
    module: str,
    object_key: str,
    method: str,
    body: Any,
    path: str = "",
    url: str = "",
    to_party: tuple[str, str] | None = None,
) -> OcpiOutboxItem:
    """Queues one push in the caller's transaction; its delivery is started once that commits."""
    item = OcpiOutboxItem.objects.create(
        partner=partner,
        module=module,
        object_key=object_key,
        method=method,
        path=path,
        url=url,
        body=body,
        to_country_code=to_party[0] if to_party else "",
        to_party_id=to_party[1] if to_party else "",
        next_attempt_at=timezone.now(),
    )
    deferred = _deferred_kicks.get()
    if deferred is not None:
        deferred.add(partner.pk)
    else:
        transaction.on_commit(functools.partial(_kick, partner.pk))
    return item


# Inside `kicks_deferred()`: the partners whose delivery is to be started once at the end.
_deferred_kicks: ContextVar[set[int] | None] = ContextVar("ocpi_outbox_deferred_kicks", default=None)


@contextlib.contextmanager
def kicks_deferred() -> Iterator[None]:
    """Queues made inside start one delivery per partner when the block ends (after commit), not one per
    item: a sweep or a sync that queues thousands of items publishes a handful of Celery messages
    (bench/ocpi_push.py). Nothing is started when the block raises."""
    pending: set[int] = set()
    token = _deferred_kicks.set(pending)
    try:
        yield
    finally:
        _deferred_kicks.reset(token)
    for partner_id in sorted(pending):
        transaction.on_commit(functools.partial(_kick, partner_id))


def _kick(partner_id: int) -> None:
    from cpms.ocpi.tasks import outbox_deliver  # the task module imports this one

    try:
        outbox_deliver.delay(partner_id)
    except Exception:  # a broker that is down: the sweep delivers it (docs/reliability.md case 32)
        logger.warning("OCPI outbox: could not queue delivery for partner %s; the sweep will", partner_id)


def _lease_take(partner_id: int, now: datetime) -> bool:
    until = now + timedelta(seconds=settings.OCPI_OUTBOX_LEASE_S)
    taken = (
        OcpiPartner.objects.filter(pk=partner_id)
        .filter(Q(outbox_lease_until__isnull=True) | Q(outbox_lease_until__lt=now))
        .update(outbox_lease_until=until)
    )
    return taken == 1


def _lease_release(partner_id: int) -> None:
    OcpiPartner.objects.filter(pk=partner_id).update(outbox_lease_until=None)


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(2 ** max(attempts - 1, 0), settings.OCPI_OUTBOX_BACKOFF_MAX_S))


def _item_url(partner: OcpiPartner, item: OcpiOutboxItem) -> str | None:
    if item.url:
        return item.url
    base = client.endpoint_url(partner, item.module, InterfaceRole.RECEIVER)
    return base + item.path if base else None


def outbox_deliver(
    *, partner_id: int, limit: int | None = None, now: datetime | None = None
) -> DeliveryRound:
    """One delivery round for a partner: its due items, oldest first, in order per object."""
    now = now or timezone.now()
    if not _lease_take(partner_id, now):
        return DeliveryRound(0, 0, 0, 0, leased=False)
    try:
        return _round(partner_id, limit or settings.OCPI_OUTBOX_ROUND_ITEMS)
    finally:
        _lease_release(partner_id)


def _round(partner_id: int, limit: int) -> DeliveryRound:
    partner = OcpiPartner.objects.select_related("party").get(pk=partner_id)
    if partner.status != PartnerStatus.REGISTERED:
        return DeliveryRound(0, 0, 0, _pending(partner_id), leased=True)
    token = client.outgoing_token(partner)
    delivered = failed = refused = 0
    blocked: set[str] = set()  # objects with an older item not delivered in this round
    pending = OcpiOutboxItem.objects.filter(partner_id=partner_id, status=OutboxStatus.PENDING).order_by("id")
    for item in pending[: limit * 4]:
        if delivered + failed + refused >= limit:
            break
        if item.object_key in blocked:
            continue
        now = timezone.now()
        if item.next_attempt_at > now:
            blocked.add(item.object_key)
            continue
        url = _item_url(partner, item)
        try:
            if url is None:
                raise client.PartnerRefused(
                    f"The partner has no {item.module} receiver endpoint.", http_status=0, status_code=None
                )
            client.call(
                item.method,
                url,
                token=token,
                from_party=client.our_party(partner),
                to_party=(item.to_country_code, item.to_party_id) if item.to_country_code else None,
                body=item.body,
            )
        except client.PartnerUnavailable as exc:
            failed += 1
            _failed(partner, item, str(exc), unavailable=True)
            break
        except client.PartnerRefused as exc:
            blocked.add(item.object_key)
            if _failed(partner, item, str(exc), unavailable=False):
                refused += 1
            else:
                failed += 1
            continue
        OcpiOutboxItem.objects.filter(pk=item.pk).update(
            status=OutboxStatus.DELIVERED,
            delivered_at=timezone.now(),
            attempts=item.attempts + 1,
            last_error="",
        )
        delivered += 1
    if delivered:
        OcpiPartner.objects.filter(pk=partner_id).update(last_success_at=timezone.now())
    return DeliveryRound(delivered, failed, refused, _pending(partner_id), leased=True)


def _failed(partner: OcpiPartner, item: OcpiOutboxItem, error: str, *, unavailable: bool) -> bool:
    """Records a failed attempt; True when the item is now set aside as refused."""
    now = timezone.now()
    attempts = item.attempts + 1
    gives_up = not unavailable and attempts >= settings.OCPI_OUTBOX_REFUSED_ATTEMPTS
    next_at = now + _backoff(attempts)
    OcpiOutboxItem.objects.filter(pk=item.pk).update(
        attempts=attempts,
        last_error=error[:1000],
        next_attempt_at=next_at,
        status=OutboxStatus.REFUSED if gives_up else OutboxStatus.PENDING,
    )
    if unavailable:
        # The partner is down: nothing of it is tried before this back-off is over.
        OcpiOutboxItem.objects.filter(
            partner_id=partner.pk, status=OutboxStatus.PENDING, next_attempt_at__lt=next_at
        ).update(next_attempt_at=next_at)
    OcpiPartner.objects.filter(pk=partner.pk).update(last_error_at=now, last_error=error[:1000])
    logger.warning("OCPI push to %s (%s %s) failed: %s", partner, item.method, item.object_key, error)
    return gives_up


def _pending(partner_id: int) -> int:
    return OcpiOutboxItem.objects.filter(partner_id=partner_id, status=OutboxStatus.PENDING).count()


def partners_with_due_items(*, now: datetime | None = None) -> list[int]:
    now = now or timezone.now()
    return list(
        OcpiOutboxItem.objects.filter(
            status=OutboxStatus.PENDING, next_attempt_at__lte=now, partner__status=PartnerStatus.REGISTERED
        )
        .values_list("partner_id", flat=True)
        .distinct()
    )


def outbox_retry_refused(*, partner: OcpiPartner) -> int:
    """Puts the partner's refused items back in the queue (after the operator fixed the cause)."""
    count = OcpiOutboxItem.objects.filter(partner=partner, status=OutboxStatus.REFUSED).update(
        status=OutboxStatus.PENDING, attempts=0, next_attempt_at=timezone.now()
    )
    if count:
        transaction.on_commit(lambda: _kick(partner.pk))
    return count


def outbox_summary(*, partner: OcpiPartner) -> OutboxSummary:
    counts = OcpiOutboxItem.objects.filter(partner=partner).aggregate(
        backlog=Count("id", filter=Q(status=OutboxStatus.PENDING)),
        refused=Count("id", filter=Q(status=OutboxStatus.REFUSED)),
        delivered=Count("id", filter=Q(status=OutboxStatus.DELIVERED)),
        oldest=Min("created_at", filter=Q(status=OutboxStatus.PENDING)),
    )
    return OutboxSummary(
        backlog=counts["backlog"],
        oldest_pending_at=counts["oldest"],
        refused=counts["refused"],
        delivered=counts["delivered"],
        last_success_at=partner.last_success_at,
        last_error_at=partner.last_error_at,
        last_error=partner.last_error,
    )


def outbox_purge_delivered(*, older_than: timedelta) -> int:
    """Delivered items are kept OCPI_OUTBOX_KEEP_DAYS for inspection, then deleted."""
    deleted, _ = OcpiOutboxItem.objects.filter(
        status=OutboxStatus.DELIVERED, delivered_at__lt=timezone.now() - older_than
    ).delete()
    return deleted
