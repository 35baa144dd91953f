"""Portal session pages: the list (columns in each site's time zone, cost once billed, tokens hidden from site
hosts, filters by local date, pagination without a COUNT) and a session's page (facts, CDR lines and credits,
power and energy charts), with the denials."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from billing.models import CdrLine
from cpms.portal.sessions import downsample
from sessions.models import MeterValue
from tests.billing.test_exports import ledger_make
from tests.factories import ChargingSessionFactory


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def ledger(world):
    return ledger_make(world)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def cells(html: str, attribute: str, value) -> list[str]:
    """The text of each cell of the row marked `attribute="value"` (tags dropped, spaces collapsed)."""
    match = re.search(rf'<tr {attribute}="{value}"[^>]*>(.*?)</tr>', html, re.S)
    assert match, f"no row {attribute}={value}"
    found = re.findall(r"<td[^>]*>(.*?)</td>", match.group(1), re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in found]


def listed(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr data-session="(\d+)"', html)]


# --- the list ------------------------------------------------------------------------------------------


def test_anonymous_users_go_to_the_login_page(world):
    response = Client().get("/portal/sessions/")
    assert (response.status_code, response["Location"]) == (302, "/portal/login/?next=/portal/sessions/")
    response = Client().get("/portal/sessions/1/")
    assert (response.status_code, response["Location"]) == (302, "/portal/login/?next=/portal/sessions/1/")


def test_the_list_shows_each_session_in_its_sites_time_zone_with_its_cost(world, ledger):
    s = ledger.sessions
    html = client_for(world.operator_a).get("/portal/sessions/").content.decode()
    # Newest start first; org B's session is absent.
    assert listed(html) == [s[k].pk for k in ("s3", "s4", "s1", "s7", "s6", "s5", "s2", "s0")]
    # Berlin: 00:15 UTC is 01:15 CET, 01:30 UTC is 03:30 CEST. Net of the credit: 6.93 - 5.95.
    assert cells(html, "data-session", s["s1"].pk) == [
        "A1-CP1 A1",
        "1 / 1",
        "04A1B2C3",
        "30 Mar 2025, 01:15 CET",
        "30 Mar 2025, 03:30 CEST",
        "1 h 15 min",
        "12.35 kWh",
        "0.98 EUR 6.93 EUR before credits",
        "Completed",
    ]
    assert cells(html, "data-session", s["s3"].pk)[3:8] == [
        "31 Mar 2025, 23:00 UTC",
        "31 Mar 2025, 23:50 UTC",
        "50 min 00 s",
        "3.70 kWh",
        "2145 JPY",
    ]
    assert cells(html, "data-session", s["s5"].pk)[4:] == ["—", "—", "—", "running", "Active"]
    assert cells(html, "data-session", s["s6"].pk)[7] == "held for review"
    assert cells(html, "data-session", s["s7"].pk)[7] == "not billed yet"


def test_a_site_host_sees_the_sessions_of_their_sites_without_id_tokens(world, ledger):
    s = ledger.sessions
    html = client_for(world.host_a1).get("/portal/sessions/").content.decode()
    assert listed(html) == [s[k].pk for k in ("s4", "s1", "s7", "s5")]
    # No token column at all: the user sees tokens of no organisation.
    assert "<th>Token</th>" not in html
    assert cells(html, "data-session", s["s1"].pk)[:3] == ["A1-CP1 A1", "1 / 1", "30 Mar 2025, 01:15 CET"]
    assert "04A1B2C3" not in html
    assert "TAG-" not in html


def test_finance_sees_the_list_with_tokens(world, ledger):
    html = client_for(world.finance_a).get("/portal/sessions/").content.decode()
    assert cells(html, "data-session", ledger.sessions["s1"].pk)[2] == "04A1B2C3"


def test_another_organisation_sees_none_of_them(world, ledger):
    html = client_for(world.operator_b).get("/portal/sessions/").content.decode()
    session_b = ledger.cdr_b.session
    assert listed(html) == [session_b.pk]


def test_started_dates_are_local_at_each_site(world, ledger):
    s = ledger.sessions
    client = client_for(world.operator_a)
    # s4 started 31 March 22:00 UTC: 1 April 00:00 in Berlin, so it is an April session there.
    html = client.get("/portal/sessions/?started_after=2025-03-31&started_before=2025-04-01").content.decode()
    assert listed(html) == [s["s3"].pk]
    html = client.get("/portal/sessions/?started_after=2025-04-01").content.decode()
    assert listed(html) == [s["s4"].pk]
    query = f"site={ledger.site_utc.pk}&status=completed&started_before=2025-03-20"
    html = client.get(f"/portal/sessions/?{query}").content.decode()
    assert listed(html) == [s["s2"].pk, s["s0"].pk]
    html = client.get("/portal/sessions/?station=A1-CP1&status=active").content.decode()
    assert listed(html) == [s["s5"].pk]


def test_bad_filters_are_explained_and_list_nothing(world, ledger):
    client = client_for(world.operator_a)
    html = client.get("/portal/sessions/?started_after=2025-04-02&started_before=2025-04-01").content.decode()
    assert listed(html) == []
    assert "&#x27;Started on or after&#x27; must be before &#x27;Started before&#x27;." in html
    # Another organisation's site is not a choice.
    html = client.get(f"/portal/sessions/?site={world.site_b1.pk}").content.decode()
    assert listed(html) == []
    assert "site: Select a valid choice." in html


def test_an_empty_list_says_so(world):
    html = client_for(world.operator_a).get("/portal/sessions/").content.decode()
    assert "No charging sessions yet." in html


def test_pages_without_counting_the_sessions(world):
    start = utc(2025, 1, 1, 12)
    sessions = [
        ChargingSessionFactory(station=world.station_a2, started_at=start + timedelta(hours=i))
        for i in range(27)
    ]
    client = client_for(world.operator_a)
    with CaptureQueriesContext(connection) as queries:
        first = client.get("/portal/sessions/").content.decode()
    assert not [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert listed(first) == [session.pk for session in reversed(sessions)][:25]
    assert 'href="?page=2" rel="next"' in first
    assert 'rel="prev"' not in first
    second = client.get("/portal/sessions/?page=2").content.decode()
    assert listed(second) == [sessions[1].pk, sessions[0].pk]
    assert 'href="?page=1" rel="prev"' in second
    assert 'rel="next"' not in second
    # Filters stay in the page links.
    filtered = client.get(f"/portal/sessions/?site={world.site_a2.pk}").content.decode()
    assert f'href="?site={world.site_a2.pk}&amp;page=2" rel="next"' in filtered


# --- a session's page ----------------------------------------------------------------------------------


def meter(session, moment, measurand, value, unit, phase=""):
    return MeterValue.objects.create(
        station=session.station,
        session=session,
        timestamp=moment,
        received_at=moment,
        measurand=measurand,
        value=Decimal(value),
        unit=unit,
        phase=phase,
    )


def hidden_table(html: str, title: str) -> list[tuple[str, str]]:
    match = re.search(rf"<caption>{re.escape(title)}</caption>(.*?)</table>", html, re.S)
    assert match, title
    return re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", match.group(1))


def test_the_session_page_shows_facts_price_and_charts(world, ledger):
    s1, cdr1 = ledger.sessions["s1"], ledger.cdrs["cdr1"]
    CdrLine.objects.create(
        cdr=cdr1,
        position=1,
        dimension="energy",
        quantity=Decimal("12.345"),
        used_quantity=Decimal("12.345"),
        unit="kWh",
        unit_price=Decimal("0.35"),
        amount=Decimal("4.32"),
    )
    CdrLine.objects.create(
        cdr=cdr1,
        position=0,
        dimension="flat",
        quantity=Decimal(1),
        used_quantity=Decimal(1),
        unit="session",
        unit_price=Decimal("1.00"),
        amount=Decimal("1.00"),
    )
    meter(s1, utc(2025, 3, 30, 0, 15), "Power.Active.Import", "7000", "W")
    meter(s1, utc(2025, 3, 30, 1, 0), "Power.Active.Import", "11", "kW")
    meter(s1, utc(2025, 3, 30, 1, 0), "Power.Active.Import", "3000", "W", phase="L1")  # per phase: ignored
    meter(s1, utc(2025, 3, 30, 0, 15), "Energy.Active.Import.Register", "1000", "Wh")
    meter(s1, utc(2025, 3, 30, 1, 0), "Energy.Active.Import.Register", "9.5", "kWh")
    meter(s1, utc(2025, 3, 30, 1, 30), "Energy.Active.Import.Register", "13345", "Wh")
    html = client_for(world.operator_a).get(f"/portal/sessions/{s1.pk}/").content.decode()
    facts = dict(re.findall(r"<dt>(.*?)</dt><dd[^>]*>(.*?)</dd>", html, re.S))
    assert facts["Started"] == "30 Mar 2025, 01:15 CET"
    assert facts["Stopped"] == "30 Mar 2025, 03:30 CEST"
    assert facts["Duration"] == "1 h 15 min"
    assert facts["Energy"] == "12.35 kWh"
    assert facts["Id token"] == "04A1B2C3"
    assert facts["Site"] == "A1 (Europe/Berlin)"
    assert facts["Subtotal (excl. tax)"] == "5.82 EUR"
    assert facts["Total"] == "6.93 EUR"
    assert facts["After credits"] == "0.98 EUR"
    assert cells(html, "data-line", 0) == ["flat", "1", "session", "1", "1.00 EUR"]
    assert cells(html, "data-line", 1) == ["energy", "12.345", "kWh", "0.35", "4.32 EUR"]
    assert cells(html, "data-credit", ledger.credits["c1"].pk) == [
        "31 Mar 2025, 23:59 CEST",
        "Goodwill, charger fault",
        "-5.00 EUR",
        "-5.95 EUR",
    ]
    # Power in W (kW converted), energy since the meter start (1000 Wh), both labelled in Berlin time.
    assert hidden_table(html, "Power (Power.Active.Import)") == [("01:15", "7,000 W"), ("03:00", "11,000 W")]
    assert hidden_table(html, "Energy delivered since the start (register)") == [
        ("01:15", "0 Wh"),
        ("03:00", "8,500 Wh"),
        ("03:30", "12,345 Wh"),
    ]


def test_per_phase_power_is_summed_when_there_is_no_total(world, ledger):
    s7 = ledger.sessions["s7"]
    for phase, watts in (("L1", "3000"), ("L2", "3100"), ("L3", "2900")):
        meter(s7, utc(2025, 3, 25, 12, 30), "Power.Active.Import", watts, "W", phase=phase)
    html = client_for(world.operator_a).get(f"/portal/sessions/{s7.pk}/").content.decode()
    assert hidden_table(html, "Power (Power.Active.Import)") == [("13:30", "9,000 W")]
    assert "Not billed yet." in html
    assert "No data for Energy delivered since the start (register)." in html


def test_the_site_host_sees_no_token_and_nobody_gets_command_buttons(world, ledger):
    s1 = ledger.sessions["s1"]
    for user in (world.host_a1, world.finance_a):
        html = client_for(user).get(f"/portal/sessions/{s1.pk}/").content.decode()
        assert 'method="post"' not in html.replace('method="post" action="/portal/logout/"', "")
        assert "hx-post" not in html
    host_html = client_for(world.host_a1).get(f"/portal/sessions/{s1.pk}/").content.decode()
    assert "04A1B2C3" not in host_html
    assert 'data-role="token"' not in host_html


def test_another_organisations_session_is_not_found(world, ledger):
    s1, s2 = ledger.sessions["s1"], ledger.sessions["s2"]
    response = client_for(world.operator_b).get(f"/portal/sessions/{s1.pk}/")
    assert response.status_code == 404
    assert f"Session {s1.pk} not found." in response.content.decode()
    # A site host's other sites are another tenant's too, as far as they can tell.
    assert client_for(world.host_a1).get(f"/portal/sessions/{s2.pk}/").status_code == 404
    assert client_for(world.operator_a).get("/portal/sessions/999999/").status_code == 404


def test_downsampling_keeps_at_most_300_points_over_the_same_span():
    start = utc(2025, 1, 1)
    readings = [(start + timedelta(seconds=i), float(i)) for i in range(1000)]
    points = downsample(readings, mode="mean")
    assert len(points) == 300
    # 300 buckets over 999 s: the first holds the readings of seconds 0..3.
    assert points[0] == (start, 1.5)
    last = downsample(readings, mode="last")
    assert last[-1] == (points[-1][0], 999.0)
    assert downsample(readings[:300]) == readings[:300]


def test_tokens_show_only_for_organisations_where_the_user_has_an_organisation_wide_role(world, ledger):
    """Operator of A and site host of B1: A's tokens show, B's are hidden."""
    from stations.services.site_hosts import site_host_grant

    site_host_grant(user=world.operator_a, site=world.site_b1)
    html = client_for(world.operator_a).get("/portal/sessions/").content.decode()
    session_b = ledger.cdr_b.session
    assert cells(html, "data-session", session_b.pk)[2] == "hidden"
    assert cells(html, "data-session", ledger.sessions["s1"].pk)[2] == "04A1B2C3"
    detail = client_for(world.operator_a).get(f"/portal/sessions/{session_b.pk}/").content.decode()
    assert 'data-role="token"' not in detail
