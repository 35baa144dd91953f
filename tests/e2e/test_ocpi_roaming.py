"""Issue 17 (roaming, OCPI 2.2.1 as CPO), acceptance 1-4, end to end: a real server process and a real Celery
worker, simulated 1.6 and 2.0.1 chargers, and the eMSP and Hub of tests/ocpi_parties, written from the
specification (not from our code), talking to the server over HTTP.

Every request our server makes to the eMSP and every answer it gives it is checked by the eMSP against the
specification: `emsp.problems` lists what we did wrong, with the section. Beat does not run here: the
`Sweeper` (ocpi_helpers.py) runs its OCPI jobs in the test process."""

import datetime as dt
import uuid

import pytest
from django.utils import timezone

from billing.models import ChargeDetailRecord
from cpms.ocpi.enums import OutboxStatus, PartnerStatus
from cpms.ocpi.models import OcpiCommand, OcpiOutboxItem, OcpiSession
from cpms.ocpi.services.credentials import partner_create
from cpms.ocpi.services.partners import partner_sync
from cpms.ocpi.services.sessions import session_object_key
from sessions.models import ChargingSession, IdToken
from tests.e2e.ocpi_helpers import (
    LiveCharger,
    Sweeper,
    cdr_posts,
    cost_by_hand,
    roaming_cpo,
    session_pushes,
    wait_until,
)
from tests.ocpi_parties import Emsp, Hub, b64, cdr_token

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

COMMAND_RESULT_WAIT_S = 30
CDR_WAIT_S = 60


def iso_in(minutes: int) -> str:
    return (timezone.now() + dt.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def session_of(record) -> ChargingSession:
    """Our ChargingSession of a simulator SessionRecord, once the server stored its start."""
    return wait_until(
        lambda: ChargingSession.objects.filter(transaction_id=record.transaction_id).first(),
        15,
        f"the session of transaction {record.transaction_id}",
    )


def cdr_of(session: ChargingSession) -> ChargeDetailRecord:
    return wait_until(
        lambda: ChargeDetailRecord.objects.filter(session=session).first(), CDR_WAIT_S, f"CDR of {session.pk}"
    )


def as_price(excl_vat, incl_vat) -> dict:
    return {"excl_vat": float(excl_vat), "incl_vat": float(incl_vat)}


def without_last_updated(session: dict) -> dict:
    """A Session object but its last_updated: the CDR's creation after the final PATCH moves it on what GET
    serves without changing anything the eMSP holds (no PATCH for a timestamp alone)."""
    return {k: v for k, v in session.items() if k != "last_updated"}


def assert_no_problems(*platforms) -> None:
    for platform in platforms:
        assert platform.errors == [], "\n".join(platform.errors)
        assert platform.problems == [], "\n".join(platform.problems)


# --- Acceptance 1 -----------------------------------------------------------------------------------------


def test_acceptance_1_emsp_registers_pulls_pages_pushes_tokens_commands_a_charger_and_gets_pushes(
    cpms_server, celery_worker_process
):
    """Acceptance 1 (direct eMSP): registers with token A; pulls locations, tariffs, sessions and CDRs page by
    page; pushes a token; sends every command to a connected 1.6 charger and gets each CommandResult at its
    response_url; receives the pushed sessions and CDRs."""
    cpo = roaming_cpo(slug="a1", country_code="NL", party_id="CPO", stations=["RO1-16", "RO1-201"])
    site = cpo.sites[0]
    partner, token_a = partner_create(party=cpo.party, name="Test eMSP")

    with Emsp() as emsp:
        emsp.register(f"{cpms_server.http_url}/ocpi/versions", token_a)
        location_pages = emsp.pull_pages("locations", limit=1)
        tariff_pages = emsp.pull_pages("tariffs", limit=1)
        partner.refresh_from_db()
        # The operator's "Sync now": the eMSP's receivers get every Location and Tariff before any EVSE
        # status PATCH (a PATCH of a Location it never got is refused, 8.2.2.3).
        partner_sync(partner=partner)
        token = emsp.token("DRV-A1", whitelist="ALLOWED")
        token_put = emsp.push_token(token)
        token_back = emsp.get_token("DRV-A1")

        with Sweeper() as sweeper, LiveCharger(cpms_server, "RO1-16", "1.6") as charger:
            reserve = emsp.command(
                "RESERVE_NOW",
                {
                    **Emsp.reserve_now(token, site.location_id, "RES-1", iso_in(15), site.evse_uid(2)),
                    "authorization_reference": "REF-RESERVE-1",
                },
            )
            reserve_result = emsp.wait_command_result(reserve.command_id, COMMAND_RESULT_WAIT_S)
            cancel = emsp.command("CANCEL_RESERVATION", Emsp.cancel_reservation("RES-1"))
            cancel_result = emsp.wait_command_result(cancel.command_id, COMMAND_RESULT_WAIT_S)
            start = emsp.command(
                "START_SESSION",
                Emsp.start_session(
                    token, site.location_id, site.evse_uid(1), authorization_reference="REF-START-1"
                ),
            )
            start_result = emsp.wait_command_result(start.command_id, COMMAND_RESULT_WAIT_S)
            remote_record = charger.transaction_started(1)
            remote = session_of(remote_record)
            # The PUT, then at least one PATCH while it charges.
            emsp.wait_for(lambda: len(session_pushes(emsp, cpo.party, remote.pk)) >= 2, timeout=20)
            # Another driver of the same eMSP at EVSE 2, with the pushed token (whitelist ALLOWED).
            local_future = charger.start(2, "DRV-A1")
            local = session_of(charger.transaction_started(2))
            stop = emsp.command("STOP_SESSION", Emsp.stop_session(str(remote.pk)))
            stop_result = emsp.wait_command_result(stop.command_id, COMMAND_RESULT_WAIT_S)
            wait_until(lambda: remote_record.status != "running", 20, "the remote session to end")
            unlock = emsp.command(
                "UNLOCK_CONNECTOR", Emsp.unlock_connector(site.location_id, site.evse_uid(1), "1")
            )
            unlock_result = emsp.wait_command_result(unlock.command_id, COMMAND_RESULT_WAIT_S)
            charger.stop(2)
            local_record = local_future.result(timeout=20)
            cdrs = {s.pk: cdr_of(s) for s in (remote, local)}
            emsp.wait_for(lambda: all(emsp.cdr(str(c.pk)) for c in cdrs.values()), timeout=CDR_WAIT_S)
            # With a date filter that every page's Link must keep (the eMSP checks it, 4.1.4.1).
            session_pages = emsp.pull_pages("sessions", limit=1, date_from="2020-01-01T00:00:00Z")
            cdr_pages = emsp.pull_pages("cdrs", limit=1, date_from="2020-01-01T00:00:00Z")
            none_yet = emsp.pull_pages("sessions", date_to="2020-01-01T00:00:00Z")

        # Registration and the pulls, page by page (the harness checks X-Limit, the Link and its filters).
        partner.refresh_from_db()
        assert partner.status == PartnerStatus.REGISTERED
        assert [(p.http_status, len(p.data), p.headers["X-Total-Count"]) for p in location_pages] == [
            (200, 1, "2"),
            (200, 1, "2"),
        ]
        assert sorted(loc["id"] for p in location_pages for loc in p.data) == sorted(
            s.location_id for s in cpo.sites
        )
        assert [(p.http_status, len(p.data), p.headers["X-Total-Count"]) for p in tariff_pages] == [
            (200, 1, "2"),
            (200, 1, "2"),
        ]
        pulled_tariffs = [t for p in tariff_pages for t in p.data]
        assert {t["currency"] for t in pulled_tariffs} == {"EUR"}
        assert [
            [[c["type"] for c in e["price_components"]] for e in t["elements"]] for t in pulled_tariffs
        ] == [
            [["FLAT"], ["ENERGY"]],
            [["FLAT"], ["ENERGY"]],
        ]
        # The pushed Locations and Tariffs equal what was pulled, EVSE statuses apart (they changed since).
        assert {key[2] for key in emsp.locations} == {s.location_id for s in cpo.sites}
        assert {key[2]: t for key, t in emsp.tariffs.items()} == {t["id"]: t for t in pulled_tariffs}

        # The token push.
        assert (token_put.http_status, token_put.status_code) in {(200, 1000), (201, 1000)}, token_put
        assert token_back.ok, token_back
        assert {k: token_back.data[k] for k in token} == token

        # Every command answered at once, then its result at the response_url.
        for response in (reserve, cancel, start, stop, unlock):
            assert (response.http_status, response.status_code, response.data["result"]) == (
                200,
                1000,
                "ACCEPTED",
            ), response
        assert [
            r["result"] for r in (reserve_result, cancel_result, start_result, stop_result, unlock_result)
        ] == ["ACCEPTED"] * 5
        assert charger.charger.result.calls_received["ReserveNow"] == 1
        assert charger.charger.result.calls_received["CancelReservation"] == 1
        assert charger.charger.result.calls_received["RemoteStartTransaction"] == 1
        assert charger.charger.result.calls_received["RemoteStopTransaction"] == 1
        assert charger.charger.result.calls_received["UnlockConnector"] == 1
        assert (remote_record.status, remote_record.remote, remote_record.stop_reason) == (
            "completed",
            True,
            "Remote",
        )
        assert local_record.status == "completed", local_record.failure

        # The pushed sessions: PUT first, then PATCHes only, ending COMPLETED with the CDR's cost.
        expected_auth = {remote.pk: ("COMMAND", "REF-START-1"), local.pk: ("WHITELIST", None)}
        for session, record in ((remote, remote_record), (local, local_record)):
            session.refresh_from_db()
            cdr = cdrs[session.pk]
            pushes = session_pushes(emsp, cpo.party, session.pk)
            assert pushes[0][0] == "PUT"
            assert [method for method, _ in pushes[1:]] == ["PATCH"] * (len(pushes) - 1)
            assert len(pushes) >= 2
            held = emsp.session(str(session.pk))
            assert (held["status"], held["kwh"], held["total_cost"]) == (
                "COMPLETED",
                record.energy_wh / 1000,
                as_price(cdr.subtotal, cdr.total),
            )
            assert held["cdr_token"] == cdr_token(token)
            assert (held["location_id"], held["evse_uid"], held["connector_id"]) == (
                site.location_id,
                str(session.evse_id),
                "1",
            )
            pushed_cdr = emsp.cdr(str(cdr.pk))
            assert len(cdr_posts(emsp, str(cdr.pk))) == 1
            assert pushed_cdr["total_cost"] == as_price(*cost_by_hand(record.energy_wh))
            assert pushed_cdr["total_energy"] == record.energy_wh / 1000
            assert pushed_cdr["cdr_token"] == cdr_token(token)

        # The pulls of sessions and CDRs, one per page, give what was pushed.
        assert [(p.http_status, len(p.data), p.headers["X-Total-Count"]) for p in session_pages] == [
            (200, 1, "2"),
            (200, 1, "2"),
        ]
        assert {s["id"]: without_last_updated(s) for p in session_pages for s in p.data} == {
            str(s.pk): without_last_updated(emsp.session(str(s.pk))) for s in (remote, local)
        }
        assert [(p.http_status, len(p.data), p.headers["X-Total-Count"]) for p in cdr_pages] == [
            (200, 1, "2"),
            (200, 1, "2"),
        ]
        assert [(p.http_status, p.data, p.headers["X-Total-Count"]) for p in none_yet] == [(200, [], "0")]
        assert {c["id"]: c for p in cdr_pages for c in p.data} == {
            str(c.pk): emsp.cdr(str(c.pk)) for c in cdrs.values()
        }
        assert (
            OcpiOutboxItem.objects.filter(partner=partner).exclude(status=OutboxStatus.DELIVERED).count() == 0
        )
        assert sweeper.errors == []
        assert emsp.errors == []
        # What the eMSP found against the specification, and (13.3.1 StartSession.authorization_reference:
        # "this reference will be provided in the relevant Session and/or CDR") the sessions'
        # authorisations: the cancelled reservation's reference belongs to no session.
        authorisations = {
            s.pk: (
                emsp.session(str(s.pk))["auth_method"],
                emsp.session(str(s.pk)).get("authorization_reference"),
            )
            for s in (remote, local)
        }
        wrong_references = [
            f"session {pk}: {got}, expected {expected_auth[pk]}"
            for pk, got in authorisations.items()
            if got != expected_auth[pk]
        ]
        command_names = {f"commands-result/{cid}": c["command"] for cid, c in emsp.commands_sent.items()}
        assert emsp.problems + wrong_references == [], "\n".join(
            [*emsp.problems, *wrong_references, f"(commands sent: {command_names})"]
        )


# --- Acceptance 2 -----------------------------------------------------------------------------------------


def arrivals(emsp: Emsp, method: str, path: str, body_id: str | None = None) -> list[int]:
    """Where in the eMSP's requests (in arrival order) those of `method` on `path` (with `body["id"]`) are."""
    return [
        index
        for index, r in enumerate(list(emsp.requests))
        if r.method == method
        and r.path == path
        and (body_id is None or (isinstance(r.body, dict) and r.body.get("id") == body_id))
    ]


def test_acceptance_2_drivers_charge_at_16_and_201_with_pushed_and_realtime_tokens_and_hand_checked_cdrs(
    cpms_server, celery_worker_process
):
    """Acceptance 2: drivers of the eMSP charge at a simulated 1.6 and a 2.0.1 charger, each once with a token
    the eMSP pushed in advance and once with a token we do not know, authorised in real time at the eMSP.
    The eMSP receives each session (PUT, then PATCHes) and a CDR whose total_cost is our CDR's subtotal and
    total, and the total computed here from the tariff and the energy the charger reported."""
    cpo = roaming_cpo(slug="a2", country_code="NL", party_id="CPO", stations=["RO2-16", "RO2-201"])
    partner, token_a = partner_create(party=cpo.party, name="Test eMSP")

    with Emsp() as emsp:
        emsp.register(f"{cpms_server.http_url}/ocpi/versions", token_a)
        partner.refresh_from_db()
        partner_sync(partner=partner)
        tokens = {
            ("1.6", "pushed"): emsp.token("PUSHED-16", whitelist="ALLOWED"),
            ("2.0.1", "pushed"): emsp.token("PUSHED-201", whitelist="ALLOWED"),
            # Never pushed: the eMSP knows them and allows them when we ask (12.2.2.2).
            ("1.6", "realtime"): emsp.token("RT-16", whitelist="NEVER"),
            ("2.0.1", "realtime"): emsp.token("RT-201", whitelist="NEVER"),
        }
        token_puts = [emsp.push_token(tokens[(v, "pushed")]) for v in ("1.6", "2.0.1")]
        emsp.realtime_auth = {"RT-16": "ALLOWED", "RT-201": "ALLOWED"}

        with (
            Sweeper() as sweeper,
            LiveCharger(cpms_server, "RO2-16", "1.6") as charger16,
            LiveCharger(cpms_server, "RO2-201", "2.0.1") as charger201,
        ):
            places = {}
            for version, charger in (("1.6", charger16), ("2.0.1", charger201)):
                for connector_id, how in ((1, "pushed"), (2, "realtime")):
                    future = charger.start(connector_id, tokens[(version, how)]["uid"])
                    places[(version, how)] = (charger, connector_id, future)
            sessions = {
                key: session_of(charger.transaction_started(connector_id))
                for key, (charger, connector_id, _) in places.items()
            }
            # They charge until the eMSP has each one's PUT and at least one PATCH.
            emsp.wait_for(
                lambda: all(len(session_pushes(emsp, cpo.party, s.pk)) >= 2 for s in sessions.values()),
                timeout=30,
            )
            for charger, connector_id, _ in places.values():
                charger.stop(connector_id)
            records = {key: future.result(timeout=20) for key, (_, _, future) in places.items()}
            cdrs = {key: cdr_of(session) for key, session in sessions.items()}
            emsp.wait_for(lambda: all(emsp.cdr(str(c.pk)) for c in cdrs.values()), timeout=CDR_WAIT_S)
            # The sweep after the CDRs queues nothing more.
            sweeper.round()

        assert all(r.ok for r in token_puts), token_puts
        # The eMSP was asked in real time for the unknown tokens only.
        asked = [a["uid"] for a in emsp.authorizations]
        assert set(asked) == {"RT-16", "RT-201"}, asked
        for key, session in sessions.items():
            version, how = key
            record = records[key]
            cdr = cdrs[key]
            session.refresh_from_db()
            token = tokens[key]
            assert record.status == "completed", (key, record.failure)
            assert record.energy_wh > 0
            assert session.energy_wh == record.energy_wh, key

            # Our CDR, by hand: FLAT 0.50 + kWh x 0.30, 19 % VAT.
            subtotal, total = cost_by_hand(record.energy_wh)
            assert (cdr.energy_wh, cdr.subtotal, cdr.total) == (record.energy_wh, subtotal, total), key

            # The session as the eMSP holds it: PUT, then PATCHes, ending COMPLETED with the CDR's cost.
            pushes = session_pushes(emsp, cpo.party, session.pk)
            assert [m for m, _ in pushes] == ["PUT"] + ["PATCH"] * (len(pushes) - 1), key
            assert len(pushes) >= 2, key
            assert pushes[0][1]["status"] == "ACTIVE", key
            held = emsp.session(str(session.pk))
            assert (held["status"], held["kwh"], held["total_cost"], held["currency"]) == (
                "COMPLETED",
                record.energy_wh / 1000,
                as_price(subtotal, total),
                "EUR",
            ), key
            assert held["cdr_token"] == cdr_token(token), key
            if how == "pushed":
                assert (held["auth_method"], held.get("authorization_reference")) == ("WHITELIST", None), key
            else:
                first_answer = next(a["answer"] for a in emsp.authorizations if a["uid"] == token["uid"])
                assert (held["auth_method"], held.get("authorization_reference")) == (
                    "AUTH_REQUEST",
                    first_answer["authorization_reference"],
                ), key

            # The CDR: once, after the session's last PATCH, with our CDR's totals and the hand total.
            path = f"/ocpi/2.2.1/sessions/NL/CPO/{session.pk}"
            [cdr_at] = arrivals(emsp, "POST", "/ocpi/2.2.1/cdrs", str(cdr.pk))
            assert max(arrivals(emsp, "PATCH", path)) < cdr_at, key
            pushed_cdr = emsp.cdr(str(cdr.pk))
            assert (pushed_cdr["total_cost"], pushed_cdr["total_energy"], pushed_cdr["currency"]) == (
                as_price(cdr.subtotal, cdr.total),
                record.energy_wh / 1000,
                "EUR",
            ), key
            assert pushed_cdr["total_cost"] == as_price(subtotal, total), key
            assert pushed_cdr["cdr_token"] == cdr_token(token), key
            assert (pushed_cdr["auth_method"], pushed_cdr.get("authorization_reference")) == (
                held["auth_method"],
                held.get("authorization_reference"),
            ), key
            assert [t["id"] for t in pushed_cdr["tariffs"]] == [str(cdr.tariff_version.tariff_id)], key
            assert sum(
                d["volume"]
                for p in pushed_cdr["charging_periods"]
                for d in p["dimensions"]
                if d["type"] == "ENERGY"
            ) == pytest.approx(record.energy_wh / 1000, abs=1e-9), key
        assert sweeper.errors == []
        assert_no_problems(emsp)


# --- Acceptance 3 -----------------------------------------------------------------------------------------


def evse_status(item: OcpiOutboxItem) -> str:
    """The status of the only EVSE in a Location PUT or an EVSE PATCH."""
    return item.body["status"] if item.method == "PATCH" else item.body["evses"][0]["status"]


def test_acceptance_3_partner_down_pushes_queue_and_all_arrive_in_order_when_it_returns(
    cpms_server, celery_worker_process
):
    """Acceptance 3: the eMSP's server stops while a session runs. The EVSE status PATCHes, the session's
    PATCHes and its CDR queue in the outbox (nothing delivered); when the eMSP listens again on the same port,
    delivery brings everything, nothing lost, in the order queued per object: the session's PUT before its
    PATCHes before the CDR, and the EVSE's statuses in the order they changed."""
    cpo = roaming_cpo(slug="a3", country_code="NL", party_id="CPO", stations=["RO3-16"], evses=1)
    site = cpo.sites[0]
    partner, token_a = partner_create(party=cpo.party, name="Test eMSP")
    location_path = f"/ocpi/2.2.1/locations/NL/CPO/{site.location_id}"
    evse_path = f"{location_path}/{site.evse_uid(1)}"

    with Emsp() as emsp:
        emsp.register(f"{cpms_server.http_url}/ocpi/versions", token_a)
        partner.refresh_from_db()
        partner_sync(partner=partner)
        token = emsp.token("DRV-DOWN", whitelist="ALLOWED")
        assert emsp.push_token(token).ok

        with Sweeper() as sweeper, LiveCharger(cpms_server, "RO3-16", "1.6", connectors=1) as charger:
            future = charger.start(1, "DRV-DOWN")
            session = session_of(charger.transaction_started(1))
            session_path = f"/ocpi/2.2.1/sessions/NL/CPO/{session.pk}"
            emsp.wait_for(lambda: emsp.session(str(session.pk)), timeout=20)
            emsp.wait_for(
                lambda: emsp.location(site.location_id)["evses"][0]["status"] == "CHARGING", timeout=20
            )
            sweeper.pause()
            before_down = len(emsp.requests)
            emsp.stop()
            down_at = timezone.now()

            # While it is down: the session charges on, the sweep queues its PATCH and delivery fails.
            samples = charger.samples_sent(1)
            wait_until(lambda: charger.samples_sent(1) >= samples + 3, 10, "more meter values")
            sweeper.round()
            charger.stop(1)
            record = future.result(timeout=20)
            cdr = cdr_of(session)
            # The EVSE's Finishing and Available statuses come after the stop (the locations sweep reads
            # status changes 2 s behind: PUSH_LAG), the session's last PATCH and its CDR with the CDR.
            wait_until(
                lambda: charger.charger.connectors[1].status == "Available",
                10,
                "the connector Available again",
            )

            def all_queued() -> bool:
                sweeper.round()
                pending = OcpiOutboxItem.objects.filter(partner=partner, status=OutboxStatus.PENDING)
                return (
                    pending.filter(module="cdrs").exists()
                    and pending.filter(module="locations", body__status="AVAILABLE").exists()
                )

            wait_until(all_queued, 15, "the CDR and the EVSE's last status queued", every_s=0.5)
            queued = list(
                OcpiOutboxItem.objects.filter(partner=partner, created_at__gte=down_at).order_by("id")
            )
            pending_while_down = list(
                OcpiOutboxItem.objects.filter(partner=partner, status=OutboxStatus.PENDING).order_by("id")
            )
            partner.refresh_from_db()
            error_while_down = partner.last_error
            received_while_down = len(emsp.requests) - before_down

            emsp.start()  # the same port
            sweeper.resume()
            # The first item waits out the back-off of the failed attempts (1 s, 2 s, ...) first.
            wait_until(
                lambda: (
                    not OcpiOutboxItem.objects.filter(partner=partner, status=OutboxStatus.PENDING).exists()
                ),
                30,
                "the outbox to drain",
                every_s=0.3,
            )

        # Queued while down: the session's PATCHes and CDR, the EVSE's status PATCHes; none delivered then.
        assert received_while_down == 0
        assert error_while_down != ""
        assert [i.pk for i in pending_while_down] == [i.pk for i in queued]
        by_object: dict[str, list[OcpiOutboxItem]] = {}
        for item in queued:
            by_object.setdefault(item.object_key, []).append(item)
        session_key = session_object_key(session.pk)
        assert [(i.module, i.method) for i in by_object[session_key]][-1] == ("cdrs", "POST")
        assert {(i.module, i.method) for i in by_object[session_key][:-1]} == {("sessions", "PATCH")}
        evse_items = by_object[f"location:{site.location_id}"]
        # An EVSE status PATCH, or the whole Location PUT again when the station row changed.
        assert {(i.module, i.method, i.path) for i in evse_items} <= {
            ("locations", "PATCH", evse_path.removeprefix("/ocpi/2.2.1/locations")),
            ("locations", "PUT", location_path.removeprefix("/ocpi/2.2.1/locations")),
        }
        assert [evse_status(i) for i in evse_items][-1] == "AVAILABLE"
        assert set(by_object) == {session_key, f"location:{site.location_id}"}

        # All delivered after the return, each once, in the order queued per object.
        assert set(
            OcpiOutboxItem.objects.filter(pk__in=[i.pk for i in queued]).values_list("status", flat=True)
        ) == {OutboxStatus.DELIVERED}
        after = list(emsp.requests)[before_down:]
        assert [
            (r.method, r.path, r.body) for r in after if r.path in (session_path, "/ocpi/2.2.1/cdrs")
        ] == [(i.method, f"/ocpi/2.2.1/{i.module}{i.path}", i.body) for i in by_object[session_key]]
        assert [(r.method, r.path, r.body) for r in after if r.path.startswith(location_path)] == [
            (i.method, f"/ocpi/2.2.1/{i.module}{i.path}", i.body) for i in evse_items
        ]
        # The whole story of the session at the eMSP: PUT before PATCHes before the CDR.
        methods = [m for m, _ in session_pushes(emsp, cpo.party, session.pk)]
        assert methods == ["PUT"] + ["PATCH"] * (len(methods) - 1)
        [cdr_at] = arrivals(emsp, "POST", "/ocpi/2.2.1/cdrs", str(cdr.pk))
        assert max(arrivals(emsp, "PATCH", session_path)) < cdr_at
        held = emsp.session(str(session.pk))
        assert (held["status"], held["kwh"], held["total_cost"]) == (
            "COMPLETED",
            record.energy_wh / 1000,
            as_price(*cost_by_hand(record.energy_wh)),
        )
        assert emsp.cdr(str(cdr.pk))["total_cost"] == as_price(cdr.subtotal, cdr.total)
        assert emsp.location(site.location_id)["evses"][0]["status"] == "AVAILABLE"
        assert sweeper.errors == []
        assert_no_problems(emsp)


# --- Acceptance 1, through a hub --------------------------------------------------------------------------


def forwarded_from_cpo(hub: Hub, cpo_party: tuple[str, str]) -> list[dict]:
    """What the hub forwarded of the CPO's own requests (its pushes), in order."""
    conn = hub.connection_for(cpo_party)
    return [f for f in hub.forwarded if f["from_connection"] == conn.id]


def test_acceptance_1_a_second_emsp_reaches_us_through_a_hub_with_routing_headers(
    cpms_server, celery_worker_process
):
    """Acceptance 1 (hub): the Hub registers with our CPO; a second eMSP (DE*EM2), registered only with the
    Hub, pushes a token and pulls its sessions and CDRs through it (routing headers from DE*EM2 to NL*CPO),
    and gets its driver's session and CDR pushes through the Hub, addressed OCPI-to DE*EM2."""
    cpo = roaming_cpo(slug="h1", country_code="NL", party_id="CPO", stations=["ROH-201"], evses=1)
    hub_partner, hub_token_a = partner_create(party=cpo.party, name="Test Hub")

    with Hub() as hub, Emsp(party_id="EM2", name="Second eMSP") as emsp2:
        hub.register(f"{cpms_server.http_url}/ocpi/versions", hub_token_a)
        emsp2.register(hub.versions_url, hub.issue_token_a(), to=("NL", "CPO"))
        hub_partner.refresh_from_db()
        partner_sync(partner=hub_partner)
        token = emsp2.token("DRV-EM2", whitelist="ALLOWED")
        token_put = emsp2.push_token(token)
        token_back = emsp2.get_token("DRV-EM2")

        with Sweeper() as sweeper, LiveCharger(cpms_server, "ROH-201", "2.0.1", connectors=1) as charger:
            future = charger.start(1, "DRV-EM2")
            session = session_of(charger.transaction_started(1))
            emsp2.wait_for(lambda: len(session_pushes(emsp2, cpo.party, session.pk)) >= 2, timeout=20)
            charger.stop(1)
            record = future.result(timeout=20)
            cdr = cdr_of(session)
            emsp2.wait_for(lambda: emsp2.cdr(str(cdr.pk)), timeout=CDR_WAIT_S)
            session_pages = emsp2.pull_pages("sessions", limit=1)
            cdr_pages = emsp2.pull_pages("cdrs", limit=1)

        assert [(r["role"], r["country_code"], r["party_id"]) for r in hub_partner.roles] == [
            ("HUB", "NL", "HUB")
        ]
        assert token_put.ok, token_put
        assert token_back.ok, token_back
        assert {k: token_back.data[k] for k in token} == token
        assert record.status == "completed", record.failure

        # Our pushes went to the Hub addressed to DE*EM2 (sessions, CDR) or to the Hub itself (a Broadcast
        # Push of Locations and Tariffs, 4.1.8.3), always from NL*CPO.
        pushes = forwarded_from_cpo(hub, ("NL", "CPO"))
        session_path = f"/sessions/NL/CPO/{session.pk}"
        about_session = [f for f in pushes if f["url"].endswith(session_path) or f["url"].endswith("/cdrs")]
        assert [f["method"] for f in about_session] == ["PUT"] + ["PATCH"] * (len(about_session) - 2) + [
            "POST"
        ]
        assert {f["to"] for f in about_session} == {("DE", "EM2")}
        assert {tuple(sorted(f["routing"].items())) for f in about_session} == {
            (
                ("OCPI-from-country-code", "NL"),
                ("OCPI-from-party-id", "CPO"),
                ("OCPI-to-country-code", "DE"),
                ("OCPI-to-party-id", "EM2"),
            )
        }
        assert {f["answer"] for f in about_session} <= {200, 201}
        held = emsp2.session(str(session.pk))
        assert (held["status"], held["kwh"], held["total_cost"], held["cdr_token"]) == (
            "COMPLETED",
            record.energy_wh / 1000,
            as_price(cdr.subtotal, cdr.total),
            cdr_token(token),
        )
        assert emsp2.cdr(str(cdr.pk))["total_cost"] == as_price(*cost_by_hand(record.energy_wh))
        assert {key[2] for key in emsp2.locations} == {cpo.sites[0].location_id}

        # Its pulls, through the Hub: its one session and CDR, as pushed.
        assert [(p.http_status, p.status_code, p.headers["X-Total-Count"]) for p in session_pages] == [
            (200, 1000, "1")
        ]
        assert [without_last_updated(s) for s in session_pages[0].data] == [
            without_last_updated(emsp2.session(str(session.pk)))
        ]
        assert [(p.http_status, p.status_code, p.headers["X-Total-Count"]) for p in cdr_pages] == [
            (200, 1000, "1")
        ]
        assert cdr_pages[0].data == [emsp2.cdr(str(cdr.pk))]
        # The Hub forwarded them from DE*EM2 to NL*CPO.
        pulls = [f for f in hub.forwarded if f["method"] == "GET" and f["to"] == ("NL", "CPO")]
        assert {(f["routing"]["OCPI-from-party-id"], f["routing"]["OCPI-to-party-id"]) for f in pulls} == {
            ("EM2", "CPO")
        }
        assert sweeper.errors == []
        assert_no_problems(hub, emsp2)


# --- Acceptance 4 -----------------------------------------------------------------------------------------


def routed_headers(emsp: Emsp, token: str | None = None, **extra: str) -> dict[str, str]:
    """The headers of a functional-module request of `emsp` to its CPO, for raw requests."""
    (from_cc, from_pid), (to_cc, to_pid) = emsp.party, emsp.target
    return {
        "Authorization": f"Token {b64(token if token is not None else emsp.connection.token_out)}",
        "X-Request-ID": str(uuid.uuid4()),
        "X-Correlation-ID": str(uuid.uuid4()),
        "OCPI-from-country-code": from_cc,
        "OCPI-from-party-id": from_pid,
        "OCPI-to-country-code": to_cc,
        "OCPI-to-party-id": to_pid,
        "Content-Type": "application/json",
        **extra,
    }


def assert_envelope(answer, http_status: int, status_code: int | set[int], what: str) -> None:
    codes = status_code if isinstance(status_code, set) else {status_code}
    assert answer.http_status == http_status and answer.status_code in codes, f"{what}: {answer}"
    assert isinstance(answer.body.get("timestamp"), str), f"{what}: {answer}"
    assert "data" not in answer.body or answer.body["data"] in (None, [], {}), f"{what}: {answer}"


def test_acceptance_4_partners_read_only_their_own_and_bad_tokens_and_bodies_get_ocpi_errors(
    cpms_server, celery_worker_process
):
    """Acceptance 4: the eMSP behind a Hub (a second partner of the same CPO) reads none of the first eMSP's
    tokens, sessions or CDRs, even when the Hub claims the first eMSP's party in OCPI-from; an eMSP
    registered with another organisation reads nothing of this one; a wrong or revoked token is answered
    401 with the envelope; malformed bodies on tokens, commands and credentials get 400/2001 or 413, never a
    500 (and the server logs no traceback)."""
    cpo = roaming_cpo(slug="s1", country_code="NL", party_id="CPO", stations=["ROS-16"], evses=1)
    other = roaming_cpo(slug="s2", country_code="NL", party_id="CPB", stations=["ROS-B"], evses=1)
    partner1, token_a1 = partner_create(party=cpo.party, name="Test eMSP")
    _, hub_token_a = partner_create(party=cpo.party, name="Test Hub")
    partner_b, token_ab = partner_create(party=other.party, name="eMSP of B")
    base = f"{cpms_server.http_url}/ocpi/2.2.1"

    with (
        Emsp() as emsp1,
        Hub() as hub,
        Emsp(party_id="EM2", name="Second eMSP") as emsp2,
        Emsp(party_id="EMB", name="eMSP of B") as emsp_b,
    ):
        emsp1.register(f"{cpms_server.http_url}/ocpi/versions", token_a1)
        partner1.refresh_from_db()
        partner_sync(partner=partner1)
        hub.register(f"{cpms_server.http_url}/ocpi/versions", hub_token_a)
        emsp2.register(hub.versions_url, hub.issue_token_a(), to=("NL", "CPO"))
        emsp_b.register(f"{cpms_server.http_url}/ocpi/versions", token_ab)
        token1 = emsp1.token("DRV-ONE", whitelist="ALLOWED")
        assert emsp1.push_token(token1).ok
        assert emsp2.push_token(emsp2.token("DRV-TWO", whitelist="ALLOWED")).ok
        assert emsp_b.push_token(emsp_b.token("DRV-B", whitelist="ALLOWED")).ok

        # The first eMSP's driver charges once: a session and a CDR of partner 1.
        with LiveCharger(cpms_server, "ROS-16", "1.6", connectors=1) as charger:
            future = charger.start(1, "DRV-ONE")
            session = session_of(charger.transaction_started(1))
            wait_until(lambda: charger.samples_sent(1) >= 3, 10, "meter values")
            charger.stop(1)
            assert future.result(timeout=20).status == "completed"
        cdr = cdr_of(session)
        Sweeper().round()  # the sweep makes it a roaming session of partner 1 (OcpiSession), CDR queued
        assert OcpiSession.objects.get(session=session).partner_id == partner1.pk
        own_sessions = emsp1.pull("sessions")
        own_cdrs = emsp1.pull("cdrs")
        assert [s["id"] for s in own_sessions] == [str(session.pk)]
        assert [c["id"] for c in own_cdrs] == [str(cdr.pk)]

        # The second partner (the Hub, for DE*EM2) sees none of it.
        em2_sessions = emsp2.pull_pages("sessions")
        em2_cdrs = emsp2.pull_pages("cdrs")
        em2_token1 = emsp2.request(
            "GET", f"{emsp2._endpoint('tokens', 'RECEIVER')}/DE/EMS/DRV-ONE", params={"type": "RFID"}
        )
        em2_stop = emsp2.command("STOP_SESSION", Emsp.stop_session(str(session.pk)))
        # ... nor when the Hub names the first eMSP's party as the sender.
        hub_conn = hub.connection_for(("NL", "CPO"))
        spoofed = {
            path: hub.call(
                "GET", f"{base}/{path}", conn=hub_conn, routing=(("DE", "EMS"), ("NL", "CPO")), check=False
            )
            for path in ("sessions", "cdrs", "tokens/DE/EMS/DRV-ONE?type=RFID")
        }
        spoofed_patch = hub.call(
            "PATCH",
            f"{base}/tokens/DE/EMS/DRV-ONE",
            conn=hub_conn,
            routing=(("DE", "EMS"), ("NL", "CPO")),
            params={"type": "RFID"},
            body={"valid": False, "last_updated": token1["last_updated"][:-1] + "Z"},
            check=False,
        )

        # The eMSP of organisation B sees nothing of organisation A.
        b_locations = emsp_b.pull("locations")
        b_tariffs = emsp_b.pull("tariffs")
        b_sessions = emsp_b.pull_pages("sessions")
        b_cdrs = emsp_b.pull_pages("cdrs")
        b_location_a = emsp_b.get("locations", cpo.sites[0].location_id)
        b_token1 = emsp_b.request(
            "GET", f"{emsp_b._endpoint('tokens', 'RECEIVER')}/DE/EMS/DRV-ONE", params={"type": "RFID"}
        )
        b_start_at_a = emsp_b.command(
            "START_SESSION",
            Emsp.start_session(emsp_b.token("DRV-B"), cpo.sites[0].location_id, cpo.sites[0].evse_uid(1)),
        )
        a_locations = emsp1.pull("locations")

        # Wrong and revoked tokens.
        sessions_url = f"{base}/sessions"
        wrong = emsp1.raw("GET", sessions_url, headers=routed_headers(emsp1, token="not-a-token"))
        wrong_put = emsp1.raw(
            "PUT",
            f"{base}/tokens/DE/EMS/DRV-X?type=RFID",
            headers=routed_headers(emsp1, token="not-a-token"),
            body=emsp1.token("DRV-X"),
        )
        b_token_out = emsp_b.connection.token_out
        emsp_b.unregister()
        revoked = emsp_b.raw("GET", f"{base}/locations", headers=routed_headers(emsp1, token=b_token_out))
        dead_a = emsp1.raw("GET", f"{base}/locations", headers=routed_headers(emsp1, token=token_a1))

        # Malformed bodies, with a valid token.
        token_url = f"{base}/tokens/DE/EMS/DRV-BAD?type=RFID"
        start_url = f"{base}/commands/START_SESSION"
        credentials_url = f"{cpms_server.http_url}/ocpi/2.2.1/credentials"
        oversized = b'{"uid": "' + b"x" * (1024 * 1024 + 10) + b'"}'
        wrong_types_token = {**emsp1.token("DRV-BAD"), "whitelist": 5, "valid": "yes", "uid": ["DRV-BAD"]}
        wrong_types_start = {
            "response_url": emsp1.url("/ocpi/2.2.1/commands-result/bad"),
            "token": "DRV-ONE",
            "location_id": 5,
        }
        plain = {k: v for k, v in routed_headers(emsp1).items() if not k.startswith("OCPI-")}
        malformed = {
            "tokens bad JSON": emsp1.raw(
                "PUT", token_url, headers=routed_headers(emsp1), content=b'{"uid": '
            ),
            "tokens wrong types": emsp1.raw(
                "PUT", token_url, headers=routed_headers(emsp1), body=wrong_types_token
            ),
            "tokens not an object": emsp1.raw(
                "PUT", token_url, headers=routed_headers(emsp1), body=["DRV-BAD"]
            ),
            "tokens PATCH wrong types": emsp1.raw(
                "PATCH", token_url, headers=routed_headers(emsp1), body={"valid": "no", "last_updated": 7}
            ),
            "commands bad JSON": emsp1.raw("POST", start_url, headers=routed_headers(emsp1), content=b"{bad"),
            "commands wrong types": emsp1.raw(
                "POST", start_url, headers=routed_headers(emsp1), body=wrong_types_start
            ),
            "commands empty": emsp1.raw("POST", start_url, headers=routed_headers(emsp1), body={}),
            "credentials bad JSON": emsp1.raw("PUT", credentials_url, headers=plain, content=b"[{"),
            "credentials wrong types": emsp1.raw(
                "PUT", credentials_url, headers=plain, body={"token": 5, "url": ["x"], "roles": "CPO"}
            ),
        }
        too_big = {
            "tokens oversized": emsp1.raw("PUT", token_url, headers=routed_headers(emsp1), content=oversized),
            "commands oversized": emsp1.raw(
                "POST", start_url, headers=routed_headers(emsp1), content=oversized
            ),
            "credentials oversized": emsp1.raw("PUT", credentials_url, headers=plain, content=oversized),
        }
        still_registered = emsp1.call("GET", credentials_url, conn=emsp1.connection)
        token1_after = emsp1.get_token("DRV-ONE")

    # The second partner: nothing of the first's.
    assert [(p.http_status, p.status_code, p.data, p.headers["X-Total-Count"]) for p in em2_sessions] == [
        (200, 1000, [], "0")
    ]
    assert [(p.http_status, p.status_code, p.data, p.headers["X-Total-Count"]) for p in em2_cdrs] == [
        (200, 1000, [], "0")
    ]
    # Not its party (2001) or not a token it has (2004): either way nothing of it.
    assert_envelope(em2_token1, 404, {2001, 2004}, "eMSP 2 reading eMSP 1's token")
    assert (em2_stop.http_status, em2_stop.status_code, em2_stop.data["result"]) == (
        200,
        1000,
        "UNKNOWN_SESSION",
    )
    assert [
        (spoofed[p].http_status, spoofed[p].status_code, spoofed[p].data) for p in ("sessions", "cdrs")
    ] == [
        (200, 1000, []),
        (200, 1000, []),
    ]
    assert spoofed["tokens/DE/EMS/DRV-ONE?type=RFID"].http_status == 404, spoofed
    assert spoofed["tokens/DE/EMS/DRV-ONE?type=RFID"].data is None
    assert spoofed_patch.http_status == 404, spoofed_patch
    assert token1_after.ok and token1_after.data["valid"] is True, token1_after

    # Organisation B's eMSP: only B's Location and Tariff, no session, no CDR, not A's Location or tokens.
    assert [loc["id"] for loc in b_locations] == [other.sites[0].location_id]
    assert {(loc["country_code"], loc["party_id"]) for loc in b_locations} == {("NL", "CPB")}
    assert {(t["country_code"], t["party_id"]) for t in b_tariffs} == {("NL", "CPB")}
    assert [(p.status_code, p.data) for p in b_sessions + b_cdrs] == [(1000, []), (1000, [])]
    assert_envelope(b_location_a, 404, 2003, "B's eMSP reading A's Location")
    assert_envelope(b_token1, 404, {2001, 2004}, "B's eMSP reading A's eMSP's token")
    assert (b_start_at_a.http_status, b_start_at_a.status_code) == (404, 2003), b_start_at_a
    assert sorted(loc["id"] for loc in a_locations) == [cpo.sites[0].location_id]

    # 401 with the envelope for a wrong token, a revoked one (after DELETE credentials) and a used token A.
    for answer, what in (
        (wrong, "wrong"),
        (wrong_put, "wrong, PUT"),
        (revoked, "revoked"),
        (dead_a, "token A"),
    ):
        assert_envelope(answer, 401, 2000, what)
    partner_b.refresh_from_db()
    assert partner_b.status == PartnerStatus.UNREGISTERED

    # Malformed bodies: 400 + 2001, 413 for oversized ones; nothing stored, nothing broken.
    for what, answer in malformed.items():
        assert_envelope(answer, 400, 2001, what)
    for what, answer in too_big.items():
        assert_envelope(answer, 413, 2001, what)
    assert still_registered.ok, still_registered
    partner1.refresh_from_db()
    assert partner1.status == PartnerStatus.REGISTERED
    assert not OcpiCommand.objects.filter(partner=partner1).exists()
    assert not IdToken.objects.filter(value="DRV-BAD").exists()
    log = cpms_server.log_tail(lines=100_000)
    assert "Traceback" not in log
    assert '" 500 ' not in log
    assert_no_problems(emsp1, emsp2, emsp_b)
    # The Hub's own problems are not asserted: it made the spoofed calls on purpose.
