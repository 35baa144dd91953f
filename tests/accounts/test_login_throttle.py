"""Login throttling (docs/reliability.md case 41, django-axes): after AXES_FAILURE_LIMIT failures for one
username from one address, that pair is locked out, a correct password included; every refusal looks the same,
so the login pages tell nothing about which accounts exist or are locked."""

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient
from django.urls import reverse

PASSWORD = "pw-for-tests-1"  # tests/factories.py
PORTAL_ERROR = b"Your username and password did not match, or the account is locked."
ADMIN_ERROR = b"Please enter the correct username and password for a staff account."


@pytest.fixture(autouse=True)
def axes_settings(settings):
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 3


def portal_login(client, username, password, address="198.51.100.7"):
    return client.post(
        reverse("portal:login"), {"username": username, "password": password}, REMOTE_ADDR=address
    )


def admin_login(client, username, password, address="198.51.100.7"):
    return client.post(
        reverse("admin:login") + "?next=/admin/",
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
    )


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_portal_locks_out_after_the_limit_and_refuses_a_correct_password(world, client):
    for _ in range(3):
        response = portal_login(client, "operator_a", "wrong")
        assert (response.status_code, PORTAL_ERROR in response.content) == (200, True)
    response = portal_login(client, "operator_a", PASSWORD)
    assert response.status_code == 200
    assert PORTAL_ERROR in response.content
    assert not logged_in(client)


def test_lockout_is_per_username_and_address(world, client):
    for _ in range(3):
        portal_login(client, "operator_a", "wrong")
    # Another address, or another username from the same address, is not locked.
    assert portal_login(client, "operator_a", PASSWORD, address="198.51.100.8").status_code == 302
    client.logout()
    assert portal_login(client, "finance_a", PASSWORD).status_code == 302


def test_below_the_limit_a_correct_password_logs_in_and_resets_the_count(world, client):
    for _ in range(2):
        portal_login(client, "operator_a", "wrong")
    assert portal_login(client, "operator_a", PASSWORD).status_code == 302
    client.logout()
    for _ in range(2):
        portal_login(client, "operator_a", "wrong")
    assert portal_login(client, "operator_a", PASSWORD).status_code == 302


def test_unknown_user_wrong_password_inactive_and_locked_out_look_the_same(world, client):
    world.finance_a.is_active = False
    world.finance_a.save(update_fields=["is_active"])
    unknown = portal_login(client, "nobody-here", "wrong")
    wrong = portal_login(client, "host_a1", "wrong")
    inactive = portal_login(client, "finance_a", PASSWORD)
    for _ in range(3):
        portal_login(client, "operator_a", "wrong")
    locked = portal_login(client, "operator_a", PASSWORD)
    for _ in range(3):
        portal_login(client, "ghost", "wrong")
    locked_unknown = portal_login(client, "ghost", "wrong")

    def page(response) -> bytes:
        # The form echoes the username typed: take it out, then the pages must be identical.
        content = response.content
        for name in (b"nobody-here", b"host_a1", b"finance_a", b"operator_a", b"ghost"):
            content = content.replace(b'value="' + name + b'"', b'value=""')
        return content.replace(response.wsgi_request.META["CSRF_COOKIE"].encode(), b"")

    responses = [unknown, wrong, inactive, locked, locked_unknown]
    assert {response.status_code for response in responses} == {200}
    assert all(PORTAL_ERROR in response.content for response in responses)
    assert len({len(page(response)) for response in responses}) == 1


def test_admin_login_locks_out_with_the_same_page(world, client):
    for _ in range(3):
        response = admin_login(client, "root", "wrong")
        assert (response.status_code, ADMIN_ERROR in response.content) == (200, True)
    response = admin_login(client, "root", PASSWORD)
    assert (response.status_code, ADMIN_ERROR in response.content) == (200, True)
    assert not logged_in(client)
    assert client.get("/admin/").status_code == 302


def test_admin_login_still_works_for_others(world, client):
    for _ in range(3):
        admin_login(client, "root", "wrong")
    response = admin_login(client, "root", PASSWORD, address="198.51.100.99")
    assert (response.status_code, response["Location"]) == (302, "/admin/")


def test_lockout_page_under_asgi_is_the_login_page_too(world):
    """Under ASGI axes' middleware runs its async path, which hands the lockout handler no response: the
    handler renders the login page itself."""
    client = AsyncClient()

    def post(url, data):
        return async_to_sync(client.post)(url, data, REMOTE_ADDR="198.51.100.7")

    for _ in range(3):
        post(reverse("portal:login"), {"username": "operator_a", "password": "wrong"})
    response = post(reverse("portal:login"), {"username": "operator_a", "password": PASSWORD})
    assert (response.status_code, PORTAL_ERROR in response.content) == (200, True)
    assert "sessionid" not in response.cookies or not response.cookies["sessionid"].value

    for _ in range(3):
        post(reverse("admin:login"), {"username": "root", "password": "wrong", "next": "/admin/"})
    response = post(reverse("admin:login"), {"username": "root", "password": PASSWORD, "next": "/admin/"})
    assert (response.status_code, ADMIN_ERROR in response.content) == (200, True)


def test_in_process_logins_without_a_request_are_not_throttled(world, client):
    """The test client's login() and shells call authenticate() without a request; axes would refuse them."""
    assert client.login(username="operator_a", password=PASSWORD) is True
