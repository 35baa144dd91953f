"""The demo's id tokens (load_demo, after stations.services.demo): a group token, accepted, blocked and
expired tags. Idempotent like the rest of the demo: what exists is left as it is."""

import datetime as dt
from dataclasses import dataclass

from django.db import transaction

from accounts.models import Organisation, User
from sessions.models import IdToken
from sessions.services.tokens import id_token_create


@dataclass(frozen=True)
class DemoIdTokenSpec:
    value: str
    status: str
    owner_name: str
    expires_at: dt.datetime | None = None
    group_value: str | None = None


# 1.6 idTag is at most 20 characters (CiString20Type); these fit both versions.
ID_TOKENS: tuple[DemoIdTokenSpec, ...] = (
    DemoIdTokenSpec("DEMO-FLEET", "Accepted", "Demo fleet (group token)"),
    DemoIdTokenSpec("DEMO-TAG-OK", "Accepted", "Alice Accepted", group_value="DEMO-FLEET"),
    DemoIdTokenSpec("DEMO-TAG-OK-2", "Accepted", "Bob Accepted"),
    DemoIdTokenSpec("DEMO-TAG-BLOCKED", "Blocked", "Carol Blocked"),
    DemoIdTokenSpec(
        "DEMO-TAG-EXPIRED",
        "Expired",
        "Dave Expired",
        expires_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    ),
)


@transaction.atomic
def demo_id_tokens_load(*, actor: User, organisation: Organisation) -> int:
    """Create the demo id tokens of `organisation` where missing (`actor`: the demo superuser); returns how
    many were created."""
    created = 0
    tokens: dict[str, IdToken] = {}
    # ID_TOKENS lists a group before its members.
    for spec in ID_TOKENS:
        token = IdToken.objects.filter(organisation=organisation, value=spec.value).first()
        if token is None:
            token = id_token_create(
                actor=actor,
                organisation_id=organisation.pk,
                value=spec.value,
                status=spec.status,
                expires_at=spec.expires_at,
                group_id=tokens[spec.group_value].pk if spec.group_value else None,
                owner_name=spec.owner_name,
            )
            created += 1
        tokens[spec.value] = token
    return created
