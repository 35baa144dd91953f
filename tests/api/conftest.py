"""API test fixtures: a token-authenticated client per user, and the per-tenant objects of tests/tenants.py."""

import pytest
from rest_framework.test import APIClient

from accounts.services import api_token_get_or_create
from tests.tenants import Tenants, tenants_make


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    # The standing users get real passwords; PBKDF2 would cost ~0.5 s each, every test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api():
    """api(user) -> an APIClient sending that user's token, as an integrator would.

    Token auth (not force_authenticate) so that each request loads a fresh user: the scope selectors cache
    the user's roles on the user object."""

    def client_for(user) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_get_or_create(user=user).key}")
        return client

    return client_for


@pytest.fixture
def tenants(world) -> Tenants:
    return tenants_make(world)
