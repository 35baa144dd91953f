"""`python manage.py load_demo`: demo data for a local try-out (`make run` calls it after migrate).

Idempotent: a second run creates nothing and changes nothing (see stations.services.demo).
"""

import os
from dataclasses import replace

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from billing.services.demo import DEMO_PRICES, demo_prices_load
from cpms.errors import DomainError
from cpms.ocpi.models import OcpiParty
from cpms.ocpi.services.partners import party_create
from energy.services.demo import CIRCUIT_LIMIT_A, DEMO_SITE, GRID_LIMIT_A, demo_energy_load
from sessions.services.demo import ID_TOKENS, demo_id_tokens_load
from stations.services.demo import DemoData, demo_data_load


class Command(BaseCommand):
    help = "Create the demo organisation, sites, stations, id tokens and users (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--base-url",
            default=None,
            help="Where the server is reached, for the printed URLs "
            "(default: http://$CPMS_BIND:$CPMS_PORT/, as `make run` starts it).",
        )

    def handle(self, *args, base_url: str | None = None, **options):
        try:
            # The stations' demo data and its id tokens in one transaction, as one count.
            with transaction.atomic():
                data = demo_data_load()
                tokens_created = demo_id_tokens_load(actor=data.superuser, organisation=data.organisation)
            data = replace(data, created=data.created + tokens_created)
            prices_created = demo_prices_load(organisation=data.organisation)
            energy_created = demo_energy_load(organisation=data.organisation)
            party = OcpiParty.objects.filter(organisation=data.organisation).first() or party_create(
                organisation=data.organisation, country_code="DE", party_id="DMO", name=data.organisation.name
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self._print(data, base_url=(base_url or _default_base_url()).rstrip("/"))
        if prices_created:
            self.stdout.write(f"Demo prices: created {prices_created} rows.")
        for site_name, name, currency, _tax, per_kwh, per_idle_hour, *_ in DEMO_PRICES:
            self.stdout.write(
                f"  {site_name:<13} tariff {name!r}: {per_kwh} {currency}/kWh, {per_idle_hour} {currency}/h idle "
                "after 30 min"
            )
        if energy_created:
            self.stdout.write(f"Demo load management: created {energy_created} rows.")
        self.stdout.write(
            f"  {DEMO_SITE:<13} load-managed: grid connection {GRID_LIMIT_A} A, chargers circuit {CIRCUIT_LIMIT_A} A "
            "per phase (docs/energy.md)"
        )
        self.stdout.write(
            f"Roaming (OCPI 2.2.1): our party {party}; a partner registers at "
            f"{(base_url or _default_base_url()).rstrip('/')}/ocpi/versions with a token A from "
            "POST /api/v1/roaming/partners/ (docs/ocpi.md)"
        )

    def _print(self, data: DemoData, *, base_url: str) -> None:
        out = self.stdout
        ws_url = "ws" + base_url.removeprefix("http") + "/ocpp"
        if data.created:
            out.write(f"Demo data: created {data.created} objects in organisation {data.organisation.name}.")
        else:
            out.write(f"Demo data: already loaded (organisation {data.organisation.name}); nothing changed.")
        out.write("")
        out.write(
            self.style.WARNING(
                "WARNING: the demo passwords below are public (printed here and in the README). They are for a "
                "local demo only and must not be used in production: do not run load_demo on a production "
                "database, or delete the demo users and stations there."
            )
        )
        out.write("")
        out.write("Web")
        out.write(f"  Home         {base_url}/")
        out.write(f"  Admin        {base_url}/admin/")
        out.write(f"  REST API     {base_url}/api/v1/")
        out.write(f"  API schema   {base_url}/api/schema/   (browsable docs: {base_url}/api/docs/)")
        out.write("")
        out.write("Logins (admin and API; demo passwords are set only when load_demo creates the user)")
        for user in data.users:
            out.write(f"  {user.username:<10} {user.password:<15} {user.description}")
        out.write("  API token:  python manage.py create_api_token <username>")
        out.write("")
        out.write(
            f"Chargers: OCPP 1.6J / 2.0.1 at {ws_url}/<identity>, HTTP Basic auth "
            "(security profile 1: username = identity, password below)"
        )
        for station in data.stations:
            out.write(
                f"  {station.identity:<12} {station.password:<20} {station.site_name:<13} "
                f"{ws_url}/{station.identity}"
            )
        out.write("")
        out.write("Id tokens: " + ", ".join(f"{token.value} ({token.status})" for token in ID_TOKENS))


def _default_base_url() -> str:
    bind = os.environ.get("CPMS_BIND", "127.0.0.1")
    if bind in {"0.0.0.0", "::", "[::]"}:  # noqa: S104 - a wildcard bind is reached on the loopback address
        bind = "127.0.0.1"
    port = os.environ.get("CPMS_PORT", "8000")
    return f"http://{bind}:{port}"
