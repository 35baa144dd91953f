"""docs/reliability.md case 41 for the REST API: token guessing is throttled per client address, without
telling which keys exist; normal use has per-user rates. In-process (the throttle counts in the test's memory,
tests/conftest.py); the shared counting across server processes through Redis is in
tests/e2e/test_api_throttling.py."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

GUESSER = "198.51.100.7"
ELSEWHERE = "203.0.113.9"
WRONG = "Token 0000000000000000000000000000000000000000"


def client(address: str, header: str | None = None) -> APIClient:
    api_client = APIClient(REMOTE_ADDR=address)
    if header is not None:
        api_client.credentials(HTTP_AUTHORIZATION=header)
    return api_client


@pytest.fixture
def limits(settings):
    settings.API_AUTH_FAILURES_PER_ADDRESS = 3
    settings.API_AUTH_FAILURE_WINDOW_S = 600


def test_rel_41_wrong_tokens_from_one_address_get_429_with_retry_after(world, limits):
    statuses = [client(GUESSER, WRONG).get("/api/v1/stations/").status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
    throttled = client(GUESSER, WRONG).get("/api/v1/stations/")
    assert throttled.status_code == 429
    assert 1 <= int(throttled["Retry-After"]) <= 600
    assert throttled.json() == {
        "detail": "Too many failed authentications from your address. "
        f"Expected available in {throttled['Retry-After']} seconds."
    }


def test_rel_41_a_right_token_from_the_throttled_address_is_refused_alike(world, limits):
    """Otherwise a guesser would learn which keys exist from the answers."""
    valid = f"Token {Token.objects.create(user=world.operator_a).key}"
    for _ in range(3):
        client(GUESSER, WRONG).get("/api/v1/stations/")
    wrong, right = (
        client(GUESSER, WRONG).get("/api/v1/stations/"),
        client(GUESSER, valid).get("/api/v1/stations/"),
    )
    assert (wrong.status_code, right.status_code) == (429, 429)
    assert wrong.json() == right.json()


def test_rel_41_legitimate_user_elsewhere_unaffected(world, limits):
    valid = f"Token {Token.objects.create(user=world.operator_a).key}"
    for _ in range(4):
        client(GUESSER, WRONG).get("/api/v1/stations/")
    response = client(ELSEWHERE, valid).get("/api/v1/stations/")
    assert response.status_code == 200
    assert [s["identity"] for s in response.json()["results"]] == ["A1-CP1", "A2-CP1"]


def test_rel_41_malformed_token_headers_count_as_failures(world, limits):
    for header in ["Token", "Token a b", WRONG]:
        assert client(GUESSER, header).get("/api/v1/stations/").status_code == 401
    assert client(GUESSER, WRONG).get("/api/v1/stations/").status_code == 429


def test_rel_41_no_user_enumeration_inactive_users_token_answers_like_an_unknown_one(world):
    inactive = f"Token {Token.objects.create(user=world.finance_a).key}"
    world.finance_a.is_active = False
    world.finance_a.save()
    unknown = client(GUESSER, WRONG).get("/api/v1/stations/")
    deactivated = client(ELSEWHERE, inactive).get("/api/v1/stations/")
    assert (unknown.status_code, unknown.json()) == (401, {"detail": "Invalid token."})
    assert (deactivated.status_code, deactivated.json()) == (401, {"detail": "Invalid token."})


def test_rel_41_limit_zero_turns_the_failure_throttle_off(world, settings):
    settings.API_AUTH_FAILURES_PER_ADDRESS = 0
    assert {client(GUESSER, WRONG).get("/api/v1/stations/").status_code for _ in range(25)} == {401}


def test_rel_41_per_user_rate(world, settings):
    settings.API_THROTTLE_USER_RATE = "3/min"
    mine = client(GUESSER, f"Token {Token.objects.create(user=world.operator_a).key}")
    theirs = client(GUESSER, f"Token {Token.objects.create(user=world.operator_b).key}")
    assert [mine.get("/api/v1/sites/").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert 1 <= int(mine.get("/api/v1/sites/")["Retry-After"]) <= 60
    assert theirs.get("/api/v1/sites/").status_code == 200


def test_rel_41_anonymous_endpoints_rate_per_address(db, settings):
    settings.API_THROTTLE_ANON_RATE = "2/min"
    assert [client(GUESSER).get("/api/v1/").status_code for _ in range(3)] == [200, 200, 429]
    assert client(ELSEWHERE).get("/api/v1/").status_code == 200


def test_rel_41_default_rates_leave_normal_use_alone(world):
    """The defaults (6000/min per user) do not get in the way of an integrator's ordinary traffic."""
    mine = client(GUESSER, f"Token {Token.objects.create(user=world.operator_a).key}")
    assert {mine.get("/api/v1/stations/").status_code for _ in range(50)} == {200}


def test_rel_41_redis_down_throttles_in_this_process(world, limits, settings, caplog):
    """An unreachable shared cache neither fails the API nor lets guessing through: this process counts."""
    from cpms import throttling

    throttling._fallback.clear()
    throttling._warned_at = float("-inf")
    settings.CACHES = {
        **settings.CACHES,
        "throttle": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        },
    }
    valid = f"Token {Token.objects.create(user=world.operator_a).key}"
    assert client(ELSEWHERE, valid).get("/api/v1/stations/").status_code == 200
    statuses = [client(GUESSER, WRONG).get("/api/v1/stations/").status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    assert "throttle cache unavailable; counting in this process only" in caplog.text
