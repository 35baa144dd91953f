"""Start the ASGI server with the settings a CSMS needs:
`python -m cpms.server [--server daphne|uvicorn] [--port 8000] [--bind ...] [--proxy-headers]`.

Two servers run the same application (cpms.asgi) with the same guarantees (docs/deployment.md#server-choice):
- Daphne (the default; `--server daphne` or CPMS_ASGI_SERVER=daphne), patched by cpms/daphne_compat.py.
  Its defaults do not fit chargers: it closes every WebSocket after 24 h (`websocket_timeout`) and accepts
  frames of any size. We run it with no lifetime limit, the frame cap from OCPP_MAX_FRAME_BYTES (autobahn
  closes with 1009 past it), and WebSocket pings so a half-open connection is noticed.
- uvicorn (the production option; `--server uvicorn` or CPMS_ASGI_SERVER=uvicorn) with uvloop, httptools and
  its sans-I/O websockets protocol, bounded by cpms/uvicorn_compat.py: about twice Daphne's messages per
  CPU (docs/performance.md#daphne-and-uvicorn).

Both: pings every WS_PING_INTERVAL_S (30) answered within WS_PING_TIMEOUT_S (60), frames up to
OCPP_MAX_FRAME_BYTES, no permessage-deflate under uvicorn (it costs ~90 KiB per connection), forwarded headers
only with --proxy-headers, and `gc.freeze()` after the application is imported (cpms/gc_tuning.py).
"""

import argparse
import importlib
import logging
import os
import sys

logger = logging.getLogger("cpms.server")

SERVERS = ("daphne", "uvicorn")
# Seconds the application gets to end its connections at shutdown (Daphne's --application-close-timeout).
SHUTDOWN_TIMEOUT_S = 5


def ping_interval_s() -> float:
    return float(os.environ.get("WS_PING_INTERVAL_S", "30"))


def ping_timeout_s() -> float:
    return float(os.environ.get("WS_PING_TIMEOUT_S", "60"))


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
        str(SHUTDOWN_TIMEOUT_S),
        *(extra or []),
        "cpms.asgi:application",
    ]


def uvicorn_config(*, bind: str, port: int, proxy_headers: bool):
    """uvicorn's Config for the CSMS (the application object is imported here, not by uvicorn)."""
    import uvicorn
    from django.conf import settings

    from cpms import uvicorn_compat
    from cpms.asgi import application

    uvicorn_compat.check_compatible()
    return uvicorn.Config(
        application,
        host=bind,
        port=port,
        loop="uvloop",
        http="httptools",
        ws=uvicorn_compat.OcppWebSocketProtocol,  # websockets-sansio, bounded (cpms/uvicorn_compat.py)
        ws_max_size=settings.OCPP_MAX_FRAME_BYTES,
        ws_ping_interval=ping_interval_s(),
        ws_ping_timeout=ping_timeout_s(),
        # permessage-deflate: 124 KiB per connection against 34 without (../docs/performance.md); OCPP
        # frames are small.
        ws_per_message_deflate=False,
        lifespan="off",
        interface="asgi3",
        # Django's LOGGING stays in charge; uvicorn's own loggers say only what goes wrong (one INFO line
        # per accepted WebSocket costs CPU at 50,000 chargers), and no access log.
        log_config=None,
        log_level="warning",
        access_log=False,
        # --proxy-headers: X-Forwarded-For/-Proto rewrite the scope's client and scheme, believed only from
        # OCPP_TRUSTED_PROXIES (else uvicorn's default, 127.0.0.1), never from any peer: a forged
        # X-Forwarded-Proto would otherwise claim TLS. Without it (the documented layout) the OCPP handshake
        # reads the forwarded headers itself, from the same trusted peers
        # (stations/services/transport_security.py).
        proxy_headers=proxy_headers,
        forwarded_allow_ips=",".join(settings.OCPP_TRUSTED_PROXIES) or "127.0.0.1",
        server_header=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=SHUTDOWN_TIMEOUT_S,
        backlog=2048,
    )


def run_uvicorn(*, bind: str, port: int, proxy_headers: bool) -> None:
    import uvicorn

    from cpms import gc_tuning

    config = uvicorn_config(bind=bind, port=port, proxy_headers=proxy_headers)
    gc_tuning.freezer().freeze_now("at start")
    logger.info("uvicorn %s serving cpms.asgi on %s:%d", uvicorn.__version__, bind, port)
    uvicorn.Server(config).run()


def run_daphne(*, bind: str, port: int, proxy_headers: bool) -> None:
    from daphne.cli import CommandLineInterface

    from cpms import gc_tuning

    importlib.import_module("cpms.asgi")  # imported now, so that the freeze below holds the application
    gc_tuning.freezer().freeze_now("at start")
    extra = ["--proxy-headers"] if proxy_headers else []
    sys.argv = daphne_argv(bind=bind, port=port, extra=extra)
    CommandLineInterface().run(sys.argv[1:])


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpms.settings")
    import django

    django.setup()
    parser = argparse.ArgumentParser(description="Run the CPMS ASGI server (Daphne or uvicorn).")
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default=os.environ.get("CPMS_ASGI_SERVER", "daphne") or "daphne",
        help="ASGI server (default: CPMS_ASGI_SERVER, else daphne); uvicorn is the production option",
    )
    parser.add_argument("--bind", default=os.environ.get("CPMS_BIND", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("CPMS_PORT", "8000")))
    parser.add_argument("--proxy-headers", action="store_true", help="trust X-Forwarded-For from a proxy")
    args = parser.parse_args(argv)
    if args.server not in SERVERS:  # argparse checks choices on the command line only, not a default
        parser.error(f"CPMS_ASGI_SERVER={args.server!r}: expected one of {', '.join(SERVERS)}")
    run = run_uvicorn if args.server == "uvicorn" else run_daphne
    run(bind=args.bind, port=args.port, proxy_headers=args.proxy_headers)


if __name__ == "__main__":
    main()
