"""The tokens module, Receiver interface (cpms/ocpi/views/tokens.py, services/tokens.py): what partners push,
what they may read, and the IdToken each token is mirrored by."""

import orjson
import pytest
from django.test import Client

from cpms.ocpi.models import OcpiPartner, OcpiToken
from sessions.models import IdToken
from sessions.services.transactions import id_token_authorize
from tests.factories import IdTokenFactory
from tests.ocpi.conftest import OcpiCaller, partner_registered

pytestmark = pytest.mark.django_db

URL = "/ocpi/2.2.1/tokens/DE/EMS/012345678"


def _body(response):
    return orjson.loads(response.content)


def token(**changes):
    data = {
        "country_code": "DE",
        "party_id": "EMS",
        "uid": "012345678",
        "type": "RFID",
        "contract_id": "DE-EMS-C12345678-X",
        "visual_number": "DF000-2001-8999-1",
        "issuer": "TheNewMotion",
        "group_id": "DF000-2001-8999",
        "valid": True,
        "whitelist": "ALWAYS",
        "language": "de",
        "last_updated": "2026-01-02T03:04:05Z",
    }
    data.update(changes)
    return {name: value for name, value in data.items() if value is not ...}


def test_put_stores_the_token_and_its_id_token_mirror(roaming):
    response = roaming.caller_a.request("PUT", URL, token())
    assert response.status_code == 200
    assert _body(response)["status_code"] == 1000
    assert "data" not in _body(response)

    stored = OcpiToken.objects.get()
    assert (stored.partner, stored.country_code, stored.party_id, stored.uid, stored.type) == (
        roaming.partner_a,
        "DE",
        "EMS",
        "012345678",
        "RFID",
    )
    assert stored.contract_id == "DE-EMS-C12345678-X"
    assert stored.realtime is False
    assert stored.data == token()
    mirror = stored.id_token
    assert (mirror.organisation, mirror.value, mirror.type, mirror.status, mirror.in_local_list) == (
        roaming.party_a.organisation,
        "012345678",
        "ISO14443",
        "Accepted",
        True,
    )
    roaming.partner_a.refresh_from_db()
    group = roaming.partner_a.id_token_group
    assert mirror.group == group
    assert (group.value, group.status, group.organisation) == (
        f"OCPI-GROUP-{roaming.partner_a.pk}",
        "Accepted",
        roaming.party_a.organisation,
    )


def test_get_serves_the_token_as_stored(roaming):
    roaming.caller_a.request("PUT", URL, token())
    response = roaming.caller_a.get(URL)
    assert response.status_code == 200
    assert _body(response)["data"] == token()
    assert roaming.caller_a.get(URL + "?type=RFID").status_code == 200


def test_get_of_an_unknown_token_or_another_type_is_404_2004(roaming):
    roaming.caller_a.request("PUT", URL, token())
    for url in (URL + "?type=APP_USER", "/ocpi/2.2.1/tokens/DE/EMS/nope"):
        response = roaming.caller_a.get(url)
        assert response.status_code == 404
        assert _body(response)["status_code"] == 2004


def test_a_partner_never_reads_another_partners_token(roaming):
    roaming.caller_a.request("PUT", URL, token())
    # partner_b is DE*EMS too, but registered with organisation B: the token is partner_a's.
    response = roaming.caller_b.get(URL)
    assert response.status_code == 404
    assert _body(response)["status_code"] == 2004
    # partner_a2 (FR*OTH) asking for DE*EMS's token through its own connection.
    response = roaming.caller_a2.get(URL)
    assert response.status_code == 404
    assert _body(response)["status_code"] == 2004


def test_repeated_put_changes_nothing_twice(roaming):
    roaming.caller_a.request("PUT", URL, token())
    stored = OcpiToken.objects.get()
    mirror_updated = stored.id_token.updated_at
    response = roaming.caller_a.request("PUT", URL, token())
    assert response.status_code == 200
    again = OcpiToken.objects.get()
    assert again.updated_at == stored.updated_at
    assert again.id_token.updated_at == mirror_updated
    assert (OcpiToken.objects.count(), IdToken.objects.filter(value="012345678").count()) == (1, 1)


def test_put_replaces_and_an_older_put_is_ignored(roaming):
    roaming.caller_a.request("PUT", URL, token())
    newer = token(valid=False, whitelist="NEVER", visual_number=..., last_updated="2026-01-03T00:00:00Z")
    assert roaming.caller_a.request("PUT", URL, newer).status_code == 200
    stored = OcpiToken.objects.get()
    assert stored.data == newer
    assert (stored.id_token.status, stored.id_token.in_local_list) == ("Blocked", False)

    older = token(valid=True, last_updated="2026-01-02T12:00:00Z")
    assert roaming.caller_a.request("PUT", URL, older).status_code == 200
    stored.refresh_from_db()
    assert stored.data == newer
    assert stored.id_token.status == "Blocked"


def test_patch_changes_the_fields_sent(roaming):
    roaming.caller_a.request("PUT", URL, token())
    patch = {"valid": False, "last_updated": "2026-01-03T00:00:00Z"}
    response = roaming.caller_a.request("PATCH", URL, patch)
    assert response.status_code == 200
    stored = OcpiToken.objects.get()
    assert stored.data == token(valid=False, last_updated="2026-01-03T00:00:00Z")
    assert stored.id_token.status == "Blocked"
    assert stored.id_token.in_local_list is True

    patch = {"whitelist": "ALLOWED_OFFLINE", "valid": True, "last_updated": "2026-01-04T00:00:00Z"}
    roaming.caller_a.request("PATCH", URL, patch)
    stored.refresh_from_db()
    assert (stored.data["whitelist"], stored.id_token.status, stored.id_token.in_local_list) == (
        "ALLOWED_OFFLINE",
        "Accepted",
        True,
    )


def test_patch_without_last_updated_is_2001_and_changes_nothing(roaming):
    roaming.caller_a.request("PUT", URL, token())
    response = roaming.caller_a.request("PATCH", URL, {"valid": False})
    assert response.status_code == 400
    body = _body(response)
    assert body["status_code"] == 2001
    assert "last_updated" in body["status_message"]
    assert OcpiToken.objects.get().data == token()


def test_patch_of_an_unknown_token_is_404_2004(roaming):
    response = roaming.caller_a.request(
        "PATCH", URL, {"valid": False, "last_updated": "2026-01-03T00:00:00Z"}
    )
    assert response.status_code == 404
    assert _body(response)["status_code"] == 2004
    assert OcpiToken.objects.count() == 0


def test_an_app_user_token_is_a_central_id_token_outside_local_lists(roaming):
    url = "/ocpi/2.2.1/tokens/DE/EMS/app-1?type=APP_USER"
    body = token(uid="app-1", type="APP_USER", whitelist="NEVER")
    assert roaming.caller_a.request("PUT", url, body).status_code == 200
    mirror = OcpiToken.objects.get().id_token
    assert (mirror.value, mirror.type, mirror.in_local_list) == ("app-1", "Central", False)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (token(issuer=...), "issuer"),
        (token(valid="yes"), "valid"),
        (token(whitelist="SOMETIMES"), "whitelist"),
        (token(type="NFC"), "type"),
        (token(uid="x" * 37, last_updated="2026-01-02T03:04:05Z"), "uid"),
        (token(contract_id="c" * 37), "contract_id"),
        (token(issuer="i" * 65), "issuer"),
        (token(last_updated="yesterday"), "last_updated"),
        (token(last_updated=...), "last_updated"),
        (token(country_code="DEU"), "country_code"),
        (token(energy_contract={"contract_id": "x"}), "supplier_name"),
        (["not", "an", "object"], "object"),
        (None, "object"),
    ],
)
def test_a_bad_body_is_400_2001_naming_the_field_and_stores_nothing(roaming, body, field):
    response = roaming.caller_a.request("PUT", URL, body)
    assert response.status_code == 400
    payload = _body(response)
    assert payload["status_code"] == 2001
    assert field in payload["status_message"]
    assert OcpiToken.objects.count() == 0
    assert not IdToken.objects.filter(value="012345678").exists()


def test_a_body_that_is_not_json_is_400_2001(roaming):
    response = roaming.caller_a.http.generic(
        "PUT",
        URL,
        data=b"{not json",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {roaming.caller_a.token}",
    )
    assert response.status_code == 400
    assert _body(response)["status_code"] == 2001


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/ocpi/2.2.1/tokens/DE/EMS/other-uid", token(), "uid"),
        (URL + "?type=APP_USER", token(), "type"),
    ],
)
def test_a_body_for_another_object_than_the_url_is_2001(roaming, url, body, field):
    response = roaming.caller_a.request("PUT", url, body)
    assert response.status_code == 400
    payload = _body(response)
    assert payload["status_code"] == 2001
    assert payload["status_message"].startswith(field)
    assert OcpiToken.objects.count() == 0


def test_a_bad_type_parameter_is_2001(roaming):
    response = roaming.caller_a.get(URL + "?type=NFC")
    assert response.status_code == 400
    assert _body(response)["status_code"] == 2001


def test_a_direct_partner_cannot_push_another_partys_token(roaming):
    url = "/ocpi/2.2.1/tokens/FR/OTH/012345678"
    response = roaming.caller_a.request("PUT", url, token(country_code="FR", party_id="OTH"))
    assert response.status_code == 404
    assert _body(response)["status_code"] == 2001
    assert OcpiToken.objects.count() == 0


def test_the_body_must_name_the_party_of_the_url(roaming):
    response = roaming.caller_a.request("PUT", URL, token(party_id="XYZ"))
    assert response.status_code == 400
    assert _body(response)["status_code"] == 2001
    assert OcpiToken.objects.count() == 0


def test_a_hub_pushes_for_the_party_it_speaks_for(roaming):
    hub, hub_token = partner_registered(
        roaming.party_a, name="hub", country_code="NL", party_id="HUB", role="HUB"
    )
    caller = OcpiCaller(hub_token, Client())
    url = "/ocpi/2.2.1/tokens/BE/XYZ/hub-1"
    body = token(country_code="BE", party_id="XYZ", uid="hub-1")
    routed = {"OCPI-from-country-code": "BE", "OCPI-from-party-id": "XYZ"}
    assert caller.request("PUT", url, body, **routed).status_code == 200
    stored = OcpiToken.objects.get()
    assert (stored.partner, stored.country_code, stored.party_id) == (hub, "BE", "XYZ")
    assert caller.get(url, **routed).status_code == 200

    # Speaking for one party, it cannot write another's token.
    other = {"OCPI-from-country-code": "BE", "OCPI-from-party-id": "QQQ"}
    response = caller.request("PUT", url, body, **other)
    assert response.status_code == 404
    assert _body(response)["status_code"] == 2001


def test_a_uid_of_our_own_token_is_refused_and_not_overwritten(roaming):
    ours = IdTokenFactory(organisation=roaming.party_a.organisation, value="012345678", status="Blocked")
    response = roaming.caller_a.request("PUT", URL, token())
    assert response.status_code == 409
    payload = _body(response)
    assert payload["status_code"] == 2000
    assert "already in use" in payload["status_message"]
    ours.refresh_from_db()
    assert (ours.status, ours.group_id) == ("Blocked", None)
    assert OcpiToken.objects.count() == 0


def test_a_uid_of_another_partners_token_is_refused(roaming):
    roaming.caller_a.request("PUT", URL, token())
    # FR*OTH pushes a card with the same uid to the same organisation.
    url = "/ocpi/2.2.1/tokens/FR/OTH/012345678"
    response = roaming.caller_a2.request("PUT", url, token(country_code="FR", party_id="OTH", valid=False))
    assert response.status_code == 409
    stored = OcpiToken.objects.get()
    assert stored.partner == roaming.partner_a
    assert stored.id_token.status == "Accepted"


def test_the_same_uid_at_another_organisation_is_another_token(roaming):
    roaming.caller_a.request("PUT", URL, token())
    assert roaming.caller_b.request("PUT", URL, token(valid=False)).status_code == 200
    by_partner = {t.partner_id: t.id_token for t in OcpiToken.objects.select_related("id_token")}
    assert by_partner[roaming.partner_a.pk].organisation == roaming.party_a.organisation
    assert by_partner[roaming.partner_b.pk].organisation == roaming.party_b.organisation
    assert by_partner[roaming.partner_b.pk].status == "Blocked"
    assert by_partner[roaming.partner_a.pk].status == "Accepted"


def test_the_group_is_created_once_per_partner_and_charges_nowhere_itself(roaming):
    roaming.caller_a.request("PUT", URL, token())
    roaming.caller_a.request("PUT", "/ocpi/2.2.1/tokens/DE/EMS/second", token(uid="second"))
    roaming.partner_a.refresh_from_db()
    group = roaming.partner_a.id_token_group
    assert IdToken.objects.filter(value__startswith="OCPI-GROUP-").count() == 1
    assert set(IdToken.objects.filter(group=group).values_list("value", flat=True)) == {"012345678", "second"}

    info = id_token_authorize(organisation_id=group.organisation_id, value=group.value)
    assert info.status == "Expired"
    member = id_token_authorize(organisation_id=group.organisation_id, value="second")
    assert (member.status, member.group_value) == ("Accepted", group.value)


def test_an_operator_blocking_the_partner_group_blocks_its_drivers(roaming):
    roaming.caller_a.request("PUT", URL, token())
    roaming.partner_a.refresh_from_db()
    IdToken.objects.filter(pk=roaming.partner_a.id_token_group_id).update(status="Blocked")
    info = id_token_authorize(organisation_id=roaming.party_a.organisation_id, value="012345678")
    assert info.status == "Blocked"


def test_post_and_delete_are_405(roaming):
    for method in ("POST", "DELETE"):
        response = roaming.caller_a.request(method, URL, token() if method == "POST" else None)
        assert response.status_code == 405
    assert OcpiToken.objects.count() == 0


def test_a_suspended_partner_cannot_push(roaming):
    OcpiPartner.objects.filter(pk=roaming.partner_a.pk).update(status="SUSPENDED")
    assert roaming.caller_a.request("PUT", URL, token()).status_code == 401
    assert OcpiToken.objects.count() == 0


def test_null_optional_fields_and_fields_the_spec_does_not_have_are_not_kept(roaming):
    body = {**token(visual_number=None, group_id=None, energy_contract=None), "x_vendor": {"a": 1}}
    assert roaming.caller_a.request("PUT", URL, body).status_code == 200
    assert OcpiToken.objects.get().data == token(visual_number=..., group_id=...)


def test_patch_cannot_rename_the_token(roaming):
    roaming.caller_a.request("PUT", URL, token())
    response = roaming.caller_a.request(
        "PATCH", URL, {"uid": "other", "last_updated": "2026-01-03T00:00:00Z"}
    )
    assert response.status_code == 400
    assert _body(response)["status_code"] == 2001
    assert OcpiToken.objects.get().uid == "012345678"


def test_a_lower_case_party_in_the_url_is_the_same_party(roaming):
    url = "/ocpi/2.2.1/tokens/de/ems/012345678"
    assert roaming.caller_a.request("PUT", url, token(country_code="de", party_id="ems")).status_code == 200
    assert (OcpiToken.objects.get().country_code, OcpiToken.objects.get().party_id) == ("DE", "EMS")
    assert roaming.caller_a.get(URL).status_code == 200
