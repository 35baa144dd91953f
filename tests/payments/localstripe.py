"""A real Stripe-compatible server for the payment tests: `localstripe` (PyPI) as a process on a free port.

Cards reach it the way a browser's Stripe.js sends them (`card_token`: POST /v1/tokens with the card and the
publishable key); our server only ever sees the token. Test cards: 4242424242424242 is authorised,
4000000000000002 is declined. The tests read the provider's own records back (`intent`, `charge`) to show
what money moved there.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

VISA = "4242424242424242"
DECLINED = "4000000000000002"
SECRET_KEY = "sk_test_cpms"
PUBLISHABLE_KEY = "pk_test_cpms"
WEBHOOK_SECRET = "whsec_cpms_test"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalStripe:
    url: str
    process: subprocess.Popen
    log_path: Path

    def _request(self, method: str, path: str, data: dict | None = None, *, key: str = SECRET_KEY) -> dict:
        body = urllib.parse.urlencode(data or {}).encode() if data is not None else None
        # Our own test server's http:// address: no other scheme reaches here.
        request = urllib.request.Request(f"{self.url}{path}", data=body, method=method)  # noqa: S310
        request.add_header("Authorization", f"Bearer {key}")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            text = response.read()
            return json.loads(text) if text.strip() else {}

    def card_token(self, number: str = VISA) -> str:
        """What Stripe.js's createToken posts from the driver's browser."""
        data = {
            "card[number]": number,
            "card[exp_month]": "12",
            "card[exp_year]": "2034",
            "card[cvc]": "123",
            "key": PUBLISHABLE_KEY,
        }
        return self._request("POST", "/v1/tokens", data, key=PUBLISHABLE_KEY)["id"]

    def intent(self, ref: str) -> dict:
        return self._request("GET", f"/v1/payment_intents/{ref}")

    def charge(self, ref: str) -> dict:
        """The charge of an intent with its refunds: `amount` is the hold; a partial capture shows the
        released remainder as a refund without our metadata."""
        intent = self.intent(ref)
        charge = intent["latest_charge"]
        return charge if isinstance(charge, dict) else self._request("GET", f"/v1/charges/{charge}")

    def money(self, ref: str) -> dict[str, int]:
        """Minor units at the provider: held, captured (net of the release), released, refunded (ours)."""
        intent = self.intent(ref)
        if intent["latest_charge"] is None:
            return {"held": 0, "captured": 0, "released": 0, "refunded": 0, "status": intent["status"]}
        charge = self.charge(ref)
        refunds = charge.get("refunds", {}).get("data", [])
        ours = sum(r["amount"] for r in refunds if (r.get("metadata") or {}).get("cpms_refund"))
        released = sum(r["amount"] for r in refunds if not (r.get("metadata") or {}).get("cpms_refund"))
        captured = charge["amount"] - released if charge["captured"] else 0
        return {
            "held": charge["amount"],
            "captured": captured,
            "released": released
            if charge["captured"]
            else (charge["amount"] if intent["status"] == "canceled" else 0),
            "refunded": ours,
            "status": intent["status"],
        }

    def authenticate(self, ref: str, client_secret: str, *, success: bool) -> dict:
        """The driver's answer to 3-D Secure, as localstripe's Stripe.js posts it from the browser."""
        request = urllib.request.Request(  # noqa: S310 (our own test server)
            f"{self.url}/v1/payment_intents/{ref}/_authenticate?success={'true' if success else 'false'}",
            data=json.dumps({"key": PUBLISHABLE_KEY, "client_secret": client_secret}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.load(response)

    def intents(self) -> list[dict]:
        return self._request("GET", "/v1/payment_intents?limit=100").get("data", [])

    def webhook_to(self, url: str, secret: str = WEBHOOK_SECRET) -> None:
        """Have the server sign and POST its events to `url` (localstripe's own config endpoint)."""
        self._request("POST", "/_config/webhooks/cpms", {"url": url, "secret": secret})

    def flush(self) -> None:
        self._request("DELETE", "/_config/data")

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The server stopped (SIGSTOP) inside the block: requests wait unanswered, as with a provider
        outage; they are served when it resumes."""
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.process.pid, signal.SIGCONT)


# localstripe keeps its store in one fixed file, /tmp/localstripe.pickle, rewritten on every change and read at
# start: two servers (two test workers, two test runs) would share and tear each other's state, and one may
# start on the other's half-written file and crash. Ours keeps its store in memory only.
IN_MEMORY_MAIN = (
    "import runpy, sys; from localstripe import resources; "
    "resources.Store.try_load_from_disk = lambda self: None; resources.Store.dump_to_disk = lambda self: None; "
    "sys.argv = ['localstripe', '--port', sys.argv[1]]; runpy.run_module('localstripe', run_name='__main__')"
)


@contextlib.contextmanager
def localstripe_process(log_path: Path) -> Iterator[LocalStripe]:
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", IN_MEMORY_MAIN, str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"localstripe exited: {log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"localstripe not listening: {log_path.read_text()}") from None
                time.sleep(0.1)
        yield LocalStripe(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have exited already
            os.killpg(process.pid, signal.SIGCONT)
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
