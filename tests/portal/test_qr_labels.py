"""QR labels of a site's EVSEs (`/portal/sites/<pk>/labels.pdf`) and the driver's receipt PDF, read back the
way a phone and a person would: each page rendered to an image and its QR codes decoded (zxing-cpp), and the
text extracted (pdfium)."""

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pypdfium2
import pytest
import zxingcpp
from django.urls import resolve, reverse

from billing.pdf import EvseLabel, labels_pdf, receipt_pdf
from billing.types import Receipt, ReceiptLine
from stations.selectors import evse_label
from tests.factories import ChargingStationFactory, EvseFactory

pytestmark = pytest.mark.django_db


def pages(pdf: bytes) -> list[tuple[list[str], str]]:
    """Per page: the QR codes' contents in reading order (top to bottom, left to right) and the text."""
    document = pypdfium2.PdfDocument(pdf)
    try:
        out = []
        for page in document:
            image = page.render(scale=2).to_pil()
            codes = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
            codes = sorted(codes, key=lambda code: (code.position.top_left.y // 50, code.position.top_left.x))
            out.append(([code.text for code in codes], page.get_textpage().get_text_range()))
        return out
    finally:
        document.close()


def words(text: str) -> str:
    """The text with every run of whitespace (line breaks included) as one space."""
    return " ".join(text.split())


@pytest.fixture
def site_evses(world):
    """Site A1: A1-CP1 with EVSEs 2 and 1 (created in that order) and A1-CP0 with EVSE 3, which sorts first."""
    a1_2 = EvseFactory(station=world.station_a1, evse_id=2)
    a1_1 = EvseFactory(station=world.station_a1, evse_id=1)
    a0_3 = EvseFactory(station=ChargingStationFactory(identity="A1-CP0", site=world.site_a1), evse_id=3)
    EvseFactory(station=world.station_a2, evse_id=1)  # another site: not on the sheet
    return [a0_3, a1_1, a1_2]


def labels_url(site) -> str:
    return reverse("portal:site-labels", args=[site.pk])


def test_the_sheet_has_one_label_per_evse_of_the_site_in_order(client, world, site_evses):
    client.force_login(world.operator_a)
    response = client.get(labels_url(world.site_a1))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="qr-labels-site-{world.site_a1.pk}.pdf"'
    [(codes, text)] = pages(response.content)
    assert codes == [f"http://testserver/c/{evse.public_code}/" for evse in site_evses]
    for evse, code in zip(site_evses, codes, strict=True):
        match = resolve(urlsplit(code).path)
        assert (match.view_name, match.kwargs) == ("pay:evse", {"code": evse.public_code})
    labels = ["A1-CP0 EVSE 3", "A1-CP1 EVSE 1", "A1-CP1 EVSE 2"]
    assert [evse_label(evse) for evse in site_evses] == labels
    flat = words(text)
    for label, evse in zip(labels, site_evses, strict=True):
        assert f"A1 {label} Scan to pay and charge http://testserver/c/{evse.public_code}/" in flat
    assert "A2-CP1" not in flat


def test_public_base_url_is_what_the_labels_carry(client, world, site_evses, settings):
    settings.PUBLIC_BASE_URL = "https://charge.example.com"
    client.force_login(world.host_a1)
    response = client.get(labels_url(world.site_a1))
    assert response.status_code == 200
    [(codes, text)] = pages(response.content)
    assert codes == [f"https://charge.example.com/c/{evse.public_code}/" for evse in site_evses]
    assert f"https://charge.example.com/c/{site_evses[0].public_code}/" in words(text).replace(" ", "")


def test_nine_evses_take_two_pages(client, world):
    station = ChargingStationFactory(identity="A2-BIG", site=world.site_a2)
    evses = [EvseFactory(station=station, evse_id=n) for n in range(1, 10)]
    client.force_login(world.operator_a)
    response = client.get(labels_url(world.site_a2))
    assert response.status_code == 200
    [(first, _), (second, second_text)] = pages(response.content)
    assert first == [f"http://testserver/c/{evse.public_code}/" for evse in evses[:8]]
    assert second == [f"http://testserver/c/{evses[8].public_code}/"]
    assert "A2-BIG EVSE 9" in words(second_text)


def test_labels_are_denied_exactly_as_the_site_page_is(client, world, site_evses):
    cases = [
        (world.host_a1, world.site_a2),  # a site host of another site of the same organisation
        (world.operator_b, world.site_a1),  # another organisation
    ]
    for user, site in cases:
        client.force_login(user)
        page = client.get(reverse("portal:site-detail", args=[site.pk]))
        labels = client.get(labels_url(site))
        assert (page.status_code, labels.status_code) == (404, 404), user
        assert f"Site {site.pk} not found." in page.content.decode()
        assert f"Site {site.pk} not found." in labels.content.decode()
        assert labels["Content-Type"] == "text/html; charset=utf-8"
    client.logout()
    url = labels_url(world.site_a1)
    assert client.get(url)["Location"] == f"/portal/login/?next={url}"


def test_the_site_page_links_to_its_labels(client, world, site_evses):
    client.force_login(world.host_a1)
    body = client.get(reverse("portal:site-detail", args=[world.site_a1.pk])).content.decode()
    assert f'href="/portal/sites/{world.site_a1.pk}/labels.pdf" download' in body
    assert "Print QR labels (PDF)" in body


def test_a_site_without_evses_gives_a_page_saying_so(client, world):
    client.force_login(world.operator_b)
    response = client.get(labels_url(world.site_b1))
    assert response.status_code == 200
    [(codes, text)] = pages(response.content)
    assert (codes, words(text)) == ([], "B1: no EVSEs to label.")


def test_long_identities_wrap_and_urls_stay_readable():
    url = "https://charge.example.com/c/zzzzzzzzzz/"
    identity = "DE*ACME*E1234567890ABCDEFGHIJKLMNOPQRSTUVWXYZ.yard"
    [(codes, text)] = pages(labels_pdf(title="Depot", labels=[EvseLabel(f"{identity} EVSE 12", url)]))
    assert codes == [url]
    flat = words(text)
    assert flat.startswith("Depot DE*ACME*E1234567890")
    assert flat.replace(" ", "").endswith(f"{identity}EVSE12Scantopayandcharge{url}")


# --- receipt ---------------------------------------------------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")

RECEIPT = Receipt(
    number="R-org-a-17",
    operator_name="Org A Charging GmbH",
    operator_address="Hauptstr. 1\n10115 Berlin",
    operator_vat_id="DE123456789",
    site_name="A1",
    site_address="Hauptstr. 1, Berlin",
    evse_label="A1-CP1 EVSE 1",
    time_zone="Europe/Berlin",
    # 09:00:05 and 10:30:00 UTC: the receipt shows the site's clock, one hour ahead in March.
    started_at_local=datetime(2025, 3, 1, 9, 0, 5, tzinfo=ZoneInfo("UTC")).astimezone(BERLIN),
    stopped_at_local=datetime(2025, 3, 1, 10, 30, 0, tzinfo=ZoneInfo("UTC")).astimezone(BERLIN),
    meter_start_kwh=Decimal("1.000"),
    meter_stop_kwh=Decimal("13.345"),
    energy_kwh=Decimal("12.345"),
    currency="EUR",
    lines=(
        ReceiptLine("Energy 12.345 kWh x 0.35 EUR/kWh", Decimal("4.32")),
        ReceiptLine("Session fee", Decimal("1.00")),
    ),
    subtotal=Decimal("5.32"),
    tax_rate=Decimal("0.19"),
    tax=Decimal("1.01"),
    total=Decimal("6.33"),
    captured=Decimal("6.33"),
    refunded=Decimal("0.50"),
    card_hint="Visa ...4242",
    tariff_label="Public AC 2025",
)


def test_the_receipt_shows_everything_a_driver_needs():
    [(codes, text)] = pages(receipt_pdf(RECEIPT))
    assert codes == []
    assert [line.strip() for line in text.splitlines()] == [
        "Org A Charging GmbH",
        "Hauptstr. 1",
        "10115 Berlin",
        "VAT id: DE123456789",
        "Receipt R-org-a-17",
        "Site A1, Hauptstr. 1, Berlin",
        "Charge point A1-CP1 EVSE 1",
        "Time zone Europe/Berlin",
        "Session start 2025-03-01 10:00:05 Europe/Berlin",
        "Session stop 2025-03-01 11:30:00 Europe/Berlin",
        "Meter start 1.000 kWh",
        "Meter stop 13.345 kWh",
        "Energy 12.345 kWh",
        "Tariff Public AC 2025",
        "Charges",
        "Energy 12.345 kWh x 0.35 EUR/kWh €4.32",
        "Session fee €1.00",
        "Subtotal (excl. VAT) €5.32",
        "VAT 19 % €1.01",
        "Total (incl. VAT) €6.33",
        "Payment",
        "Captured €6.33",
        "Refunded €0.50",
        "Card Visa ...4242",
    ]


def test_receipt_in_another_currency_rate_and_without_optional_parts():
    receipt = replace(
        RECEIPT,
        operator_name="Łódź & Söhne <Ladestrom>",
        operator_vat_id="",
        currency="CHF",
        tax_rate=Decimal("0.081"),
        meter_start_kwh=None,
        card_hint="",
        started_at_local=datetime(2025, 7, 1, 9, 0, 5, tzinfo=ZoneInfo("UTC")).astimezone(
            ZoneInfo("America/New_York")
        ),
        time_zone="America/New_York",
    )
    [(_, text)] = pages(receipt_pdf(receipt))
    lines = [line.strip() for line in text.splitlines()]
    assert lines[0] == "Lódz & Söhne <Ladestrom>"  # ó is in WinAnsi, ź is decomposed, Ł has no decomposition
    assert not any(line.startswith(("VAT id", "Card")) for line in lines)
    assert "Session start 2025-07-01 05:00:05 America/New_York" in lines
    assert "Meter start not reported" in lines
    assert "VAT 8.1 % 1.01 CHF" in lines
    assert "Total (incl. VAT) 6.33 CHF" in lines


def test_the_same_receipt_gives_the_same_bytes():
    assert receipt_pdf(RECEIPT) == receipt_pdf(RECEIPT)
