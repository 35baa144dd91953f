"""docs/reliability.md case 41 across real server processes: failed API token authentications are counted in
Redis, so a guesser spreading attempts over the web processes is throttled as if there were one. In-process
details (Retry-After, no enumeration, per-user rates): tests/api/test_rel_41_api_throttling.py."""

import secrets
import urllib.error
import urllib.request

import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token

from tests.factories import UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

LIMIT = 4


@pytest.fixture
def two_servers(request, monkeypatch, transactional_db):
    if not settings.REDIS_URL:
        pytest.skip("without REDIS_URL each process counts alone (documented); nothing shared to test")
    monkeypatch.setenv("API_AUTH_FAILURES_PER_ADDRESS", str(LIMIT))
    # The client address comes from X-Forwarded-For, as behind the TLS proxy: each test run guesses from an
    # address of its own, so counts left in Redis by an earlier run cannot reach it.
    monkeypatch.setenv("BEHIND_TLS_PROXY", "true")
    return request.getfixturevalue("cpms_server"), request.getfixturevalue("cpms_server_b")


def get(server, token: str, address: str) -> int:
    request = urllib.request.Request(  # noqa: S310 - a loopback http:// URL we built
        f"{server.http_url}/api/v1/stations/",
        headers={"Authorization": f"Token {token}", "X-Forwarded-For": address, "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_rel_41_token_guessing_counted_across_server_processes(two_servers):
    server_a, server_b = two_servers
    valid = Token.objects.create(user=UserFactory(username="integrator")).key
    guesser, other = f"2001:db8::{secrets.token_hex(2)}", f"2001:db8:1::{secrets.token_hex(2)}"
    wrong = [secrets.token_hex(20) for _ in range(LIMIT + 1)]
    spread = [get(server_a if n % 2 else server_b, key, guesser) for n, key in enumerate(wrong[:LIMIT])]
    assert spread == [401] * LIMIT
    assert get(server_a, wrong[LIMIT], guesser) == 429
    assert get(server_b, valid, guesser) == 429
    assert (get(server_a, valid, other), get(server_b, valid, other)) == (200, 200)
