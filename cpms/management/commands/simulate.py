"""`python manage.py simulate --url ws://127.0.0.1:8000/ocpp --stations 3 --sessions`: simulated chargers.

Thin: parses options, runs cpms.simulator.run_fleet, prints the summary. Exits non-zero when a
charger could not connect (or was not accepted) or a session failed. Touches no database.
"""

import asyncio
import json
import logging

from django.core.management.base import BaseCommand, CommandError

from cpms.simulator import PROTOCOLS, FleetConfig, run_fleet
from cpms.simulator.config import DEFAULT_ID_TAG, DEFAULT_IDENTITY_PREFIX, MIXED


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError(text)
    return value


class Command(BaseCommand):
    help = "Run simulated OCPP chargers against a CSMS and print what happened."
    requires_system_checks = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("--url", default="ws://127.0.0.1:8000/ocpp", help="CSMS URL without the identity")
        parser.add_argument("--stations", type=int, default=1, help="number of chargers (default 1)")
        parser.add_argument(
            "--protocol",
            choices=[*sorted(PROTOCOLS), MIXED],
            default="1.6",
            help=f"OCPP version; {MIXED}: 1.6 and 2.0.1 alternately by charger (1.6 first)",
        )
        parser.add_argument(
            "--identity-prefix", default=DEFAULT_IDENTITY_PREFIX, help="identities <prefix>001..."
        )
        parser.add_argument(
            "--identities", default="", help="comma-separated identities (overrides --stations)"
        )
        parser.add_argument("--password", default=None, help="HTTP Basic password (username = identity)")
        parser.add_argument("--connectors", type=int, default=2, help="connectors per charger (default 2)")
        parser.add_argument("--sessions", action="store_true", help="run charging sessions")
        parser.add_argument("--session-count", type=int, default=1, help="sessions per charger (default 1)")
        parser.add_argument("--meter-samples", type=int, default=5, help="periodic MeterValues per session")
        parser.add_argument(
            "--meter-interval", type=_positive_float, default=10.0, help="seconds between MeterValues"
        )
        parser.add_argument(
            "--speedup",
            type=_positive_float,
            default=1.0,
            help="simulated charging seconds per real second (energy per sample = power x interval x speedup)",
        )
        parser.add_argument(
            "--duration",
            type=_positive_float,
            default=None,
            help="stay connected this many seconds (heartbeats, answering the CSMS); also a deadline for sessions",
        )
        parser.add_argument("--id-tag", default=DEFAULT_ID_TAG)
        parser.add_argument("--seed", type=int, default=0, help="makes meter readings reproducible")
        parser.add_argument("--response-timeout", type=_positive_float, default=30.0)
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")
        parser.add_argument("--tls-ca", default=None, help="wss://: the CSMS root certificate file (PEM)")
        parser.add_argument(
            "--tls-cert", default=None, help="profile 3: the charger's certificate file (PEM)"
        )
        parser.add_argument("--tls-key", default=None, help="profile 3: the charger's private key file (PEM)")
        parser.add_argument(
            "--organization", default="", help="the O of the certificates the chargers request (the operator)"
        )

    def handle(self, *args, **options):
        identities = tuple(i.strip() for i in options["identities"].split(",") if i.strip())
        if not identities and options["stations"] < 1:
            raise CommandError("--stations must be at least 1")
        if options["session_count"] < 1 or options["meter_samples"] < 0 or options["connectors"] < 1:
            raise CommandError(
                "--session-count and --connectors must be at least 1, --meter-samples at least 0"
            )
        if options["verbosity"] >= 2:
            logging.getLogger("cpms.simulator.wire").setLevel(logging.INFO)
        config = FleetConfig(
            url=options["url"],
            stations=options["stations"],
            protocol=options["protocol"],
            identity_prefix=options["identity_prefix"],
            identities=identities,
            password=options["password"],
            connectors=options["connectors"],
            sessions=options["sessions"],
            session_count=options["session_count"],
            meter_samples=options["meter_samples"],
            meter_interval_s=options["meter_interval"],
            speedup=options["speedup"],
            duration_s=options["duration"],
            id_tag=options["id_tag"],
            seed=options["seed"],
            response_timeout_s=options["response_timeout"],
            tls_ca_file=options["tls_ca"],
            tls_cert_file=options["tls_cert"],
            tls_key_file=options["tls_key"],
            organization=options["organization"],
        )
        try:
            summary = asyncio.run(run_fleet(config))
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(summary.as_dict(), indent=2))
        else:
            self.stdout.write(summary.format())
        if not summary.ok:
            raise CommandError(
                f"{len(summary.failed)} charger(s) failed, {summary.sessions_failed} session(s) failed",
                returncode=1,
            )
