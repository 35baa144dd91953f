"""Start the ASGI server with the settings a CSMS needs: `python -m cpms.server [--port 8000] [--bind ...]`.

Daphne's defaults do not fit chargers: it closes every WebSocket after 24 h (`websocket_timeout`) and
accepts frames of any size. We run it with no lifetime limit, the frame cap from OCPP_MAX_FRAME_BYTES
(autobahn closes with 1009 past it), and WebSocket pings so a half-open connection is noticed.
"""

import argparse
import os
import sys


def daphne_argv(*, bind: str, port: int, extra: list[str] | None = None) -> list[str]:
    from django.conf import settings

    return [
        "daphne",
        "-b",
        bind,
        "-p",
        str(port),
        "--websocket_timeout",
        "-1",
        "--websocket_connect_timeout",
        "10",
        "--ping-interval",
        os.environ.get("WS_PING_INTERVAL_S", "30"),
        "--ping-timeout",
        os.environ.get("WS_PING_TIMEOUT_S", "60"),
        "--websocket-max-message-size",
        str(settings.OCPP_MAX_FRAME_BYTES),
        "--application-close-timeout",
        "5",
        *(extra or []),
        "cpms.asgi:application",
    ]


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpms.settings")
    import django

    django.setup()
    parser = argparse.ArgumentParser(description="Run the CPMS ASGI server (Daphne).")
    parser.add_argument("--bind", default=os.environ.get("CPMS_BIND", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("CPMS_PORT", "8000")))
    parser.add_argument("--proxy-headers", action="store_true", help="trust X-Forwarded-For from a proxy")
    args = parser.parse_args(argv)
    extra = ["--proxy-headers"] if args.proxy_headers else []
    from daphne.cli import CommandLineInterface

    sys.argv = daphne_argv(bind=args.bind, port=args.port, extra=extra)
    CommandLineInterface().run(sys.argv[1:])


if __name__ == "__main__":
    main()
