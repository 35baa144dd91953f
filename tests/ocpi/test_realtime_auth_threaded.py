"""Real-time authorisation the way a server runs it: the OCPP handler's database work in worker threads with
their own connections (no inline runner), so what the charger is told is only what was committed."""

import pytest

from cpms.ocpi.models import OcpiAuthorization, OcpiPartner, OcpiToken
from cpms.ocpp.v16.handlers import V16ChargePoint
from cpms.ocpp.v201.handlers import V201ChargePoint
from tests.ocpi.test_realtime_auth import TIMEOUT_S, emsp, tokens_sender_at  # noqa: F401
from tests.ocpp.harness import Harness


@pytest.fixture(autouse=True)
def _short_timeout(settings):
    settings.OCPI_REALTIME_AUTH_TIMEOUT_S = TIMEOUT_S


@pytest.mark.parametrize(
    ("cp_class", "frame", "accepted"),
    [
        (V16ChargePoint, {"idTag": "THREAD-1"}, "idTagInfo"),
        (V201ChargePoint, {"idToken": {"idToken": "THREAD-1", "type": "ISO14443"}}, "idTokenInfo"),
    ],
)
def test_an_unknown_token_is_accepted_after_real_time_auth_in_worker_threads(
    transactional_db,
    roaming,
    world,
    emsp,  # noqa: F811 (the fixture imported above)
    cp_class,
    frame,
    accepted,
):
    tokens_sender_at(roaming.partner_a, emsp.tokens_url)
    tokens_sender_at(roaming.partner_a2, None)
    emsp.answer("THREAD-1", "ALLOWED")
    cp = Harness(cp_class, world.station_a1)
    answer = cp.call("Authorize", frame)
    assert answer[2][accepted]["status"] == "Accepted"
    token = OcpiToken.objects.get()
    assert (token.partner_id, token.realtime) == (roaming.partner_a.pk, True)
    assert OcpiAuthorization.objects.get().authorization_reference == "AUTH-1"
    assert OcpiPartner.objects.get(pk=roaming.partner_a.pk).id_token_group_id == token.id_token.group_id
