"""Big append-only tables: the changelist never counts the whole table."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.admin import BoundedCountPaginator
from sessions.admin import MeterValueAdmin
from sessions.models import MeterValue
from tests.support import at

BIG_TABLES = [
    "admin:charging_metervalue_changelist",
    "admin:stations_ocppmessage_changelist",
    "admin:charging_transactionevent_changelist",
    "admin:stations_devicevariable_changelist",
]
COUNT = re.compile(r"\bCOUNT\(", re.IGNORECASE)


@pytest.mark.parametrize("url_name", BIG_TABLES)
@pytest.mark.parametrize("actor", ["superuser", "operator_a"])
def test_changelist_counts_are_bounded(world, logs, admin_client_for, url_name, actor):
    client = admin_client_for(getattr(world, actor))
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse(url_name))
    assert response.status_code == 200
    assert response.context["cl"].show_full_result_count is False
    counts = [q["sql"] for q in captured if COUNT.search(q["sql"])]
    assert counts  # the bounded count is there...
    for sql in counts:
        assert " LIMIT " in sql.upper(), sql  # ...and every count stops at a LIMIT


def test_paginator_counts_up_to_its_limit(world):
    MeterValue.objects.bulk_create(
        MeterValue(station=world.station_a1, timestamp=at(9), value=n, received_at=at(9)) for n in range(20)
    )
    paginator = BoundedCountPaginator(MeterValue.objects.order_by("-id"), 5, count_limit=12)
    assert paginator.count == 12
    assert paginator.num_pages == 3
    assert BoundedCountPaginator(MeterValue.objects.order_by("-id"), 5, count_limit=100).count == 20


def test_page_links_grow_as_one_pages_on(world, tenants, admin_client_for, monkeypatch):
    monkeypatch.setattr(MeterValueAdmin, "list_per_page", 2)
    MeterValue.objects.bulk_create(
        MeterValue(station=world.station_a1, timestamp=at(9), value=n, received_at=at(9)) for n in range(60)
    )
    client = admin_client_for(world.superuser)
    first = client.get(reverse("admin:charging_metervalue_changelist")).context["cl"]
    # Page 1 counts (1 + 10 pages ahead) * 2 rows + 1: enough to know there is more, no more.
    assert (first.result_count, len(first.result_list)) == (23, 2)
    last = client.get(reverse("admin:charging_metervalue_changelist") + "?p=30").context["cl"]
    assert last.result_count == 60
    assert [int(mv.value) for mv in last.result_list] == [1, 0]  # newest first: ids descend
