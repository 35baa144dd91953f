import io

import pytest
from django.core.management import CommandError, call_command, load_command_class
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


def test_create_api_token_prints_only_the_key(world):
    out = io.StringIO()
    call_command("create_api_token", "operator_a", stdout=out)
    token = Token.objects.get(user=world.operator_a)
    assert out.getvalue() == f"{token.key}\n"
    assert len(token.key) == 40


def test_create_api_token_returns_the_existing_key(world):
    first, second = io.StringIO(), io.StringIO()
    call_command("create_api_token", "operator_a", stdout=first)
    call_command("create_api_token", "operator_a", stdout=second)
    assert first.getvalue() == second.getvalue()
    assert Token.objects.filter(user=world.operator_a).count() == 1


def test_create_api_token_unknown_user_is_an_error(world):
    with pytest.raises(CommandError, match=r"^No user named 'nobody'\.$"):
        call_command("create_api_token", "nobody")
    assert Token.objects.count() == 0


def test_create_api_token_unknown_user_exits_non_zero(world, capsys):
    with pytest.raises(SystemExit) as exited:
        # run_from_argv is what `manage.py create_api_token nobody` runs: CommandError -> stderr + exit 1.
        load_command_class("accounts", "create_api_token").run_from_argv(
            ["manage.py", "create_api_token", "nobody"]
        )
    assert exited.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "No user named 'nobody'." in captured.err


def test_create_api_token_refuses_inactive_user(world):
    world.finance_a.is_active = False
    world.finance_a.save()
    with pytest.raises(CommandError, match="inactive"):
        call_command("create_api_token", "finance_a")
    assert Token.objects.count() == 0


def test_token_from_the_command_authenticates(world):
    out = io.StringIO()
    call_command("create_api_token", "operator_b", stdout=out)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {out.getvalue().strip()}")
    response = client.get("/api/v1/stations/")
    assert response.status_code == 200
    assert [s["identity"] for s in response.json()["results"]] == ["B1-CP1"]


@pytest.mark.parametrize(
    "header",
    [None, "Token 0000000000000000000000000000000000000000", "Bearer abc", "Token"],
    ids=["missing", "unknown-key", "wrong-scheme", "no-key"],
)
def test_requests_without_a_valid_token_are_401(world, header):
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/stations/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_session_auth_works_for_the_portal(world):
    client = APIClient()
    client.force_login(world.host_a1)
    response = client.get("/api/v1/stations/")
    assert response.status_code == 200
    assert [s["identity"] for s in response.json()["results"]] == ["A1-CP1"]


def test_session_auth_write_needs_csrf(world):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(world.operator_a)
    response = client.patch(f"/api/v1/sites/{world.site_a1.pk}/", {"name": "Renamed"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    world.site_a1.refresh_from_db()
    assert world.site_a1.name == "A1"
