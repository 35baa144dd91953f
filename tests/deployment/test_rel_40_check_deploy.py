"""docs/reliability.md case 40: `manage.py check --deploy` is clean with the documented production
environment.

The environment is read from docs/production.env, the file docs/deployment.md tells operators to install,
so the documentation and this test cannot drift apart. Only the secret key (left empty there on purpose)
and the runtime directory are filled in."""

import os
import secrets
import subprocess
import sys

from django.conf import settings

PRODUCTION_ENV = settings.BASE_DIR / "docs" / "production.env"


def production_env() -> dict[str, str]:
    values = {}
    for line in PRODUCTION_ENV.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep and name == name.strip() and name.isupper(), f"not NAME=value: {line!r}"
        values[name] = value
    return values


def check_deploy(env: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    """`manage.py check --deploy` in a process that sees only `env` (not this test run's variables)."""
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=settings.BASE_DIR,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CPMS_VAR_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_rel_40_check_deploy_clean_with_the_documented_production_env(tmp_path):
    env = production_env()
    assert env["DJANGO_SECRET_KEY"] == ""  # the operator generates it; the file must not ship one
    result = check_deploy({**env, "DJANGO_SECRET_KEY": secrets.token_urlsafe(60)}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "System check identified no issues (0 silenced)."
    assert "WARNINGS" not in result.stderr


def test_rel_40_the_file_as_shipped_is_refused_until_the_secret_key_is_set(tmp_path):
    result = check_deploy(production_env(), tmp_path)
    assert "?: (security.W009) Your SECRET_KEY" in result.stderr
    assert "System check identified 1 issue (0 silenced)." in result.stderr


def test_rel_40_each_documented_setting_is_needed(tmp_path):
    """Without the file's security settings, check --deploy names each (so the clean run above proves
    something)."""
    needed = {
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "security.W005",
        "SECURE_HSTS_PRELOAD": "security.W021",
        "SECURE_SSL_REDIRECT": "security.W008",
        "SECURE_COOKIES": "security.W012",  # and W016: the CSRF cookie
    }
    env = {**production_env(), "DJANGO_SECRET_KEY": secrets.token_urlsafe(60)}
    for name in needed:
        del env[name]
    result = check_deploy(env, tmp_path)
    assert [warning for warning in needed.values() if warning not in result.stderr] == []
    assert "System check identified 5 issues (0 silenced)." in result.stderr
