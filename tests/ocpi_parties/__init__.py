"""OCPI 2.2.1 parties for tests, written from the specification (not from `cpms`): an eMSP and a Hub that
talk to a CPO over real HTTP. See README.md in this folder."""

from tests.ocpi_parties.emsp import Emsp, cdr_token, make_token
from tests.ocpi_parties.hub import Hub
from tests.ocpi_parties.platform import (
    Connection,
    OcpiError,
    OcpiResponse,
    Platform,
    b64,
    envelope,
    now_iso,
    paginate,
    running,
)

__all__ = [
    "Connection",
    "Emsp",
    "Hub",
    "OcpiError",
    "OcpiResponse",
    "Platform",
    "b64",
    "cdr_token",
    "envelope",
    "make_token",
    "now_iso",
    "paginate",
    "running",
]
