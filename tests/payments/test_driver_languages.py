"""The drivers' pages, receipts and label line in the site's language (issue 18: "in the site's language and
currency"): the EVSE page in the language of the site's country, English for a site without one; the live
page, the receipt (page, PDF, mail) in the language the driver paid in; the catalogs complete and compiled
by `manage.py compile_translations` (babel). The .mo files are built before the tests (`make test`)."""

import re
from datetime import timedelta
from pathlib import Path

import pypdfium2
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone, translation

from billing.enums import PaymentStatus
from billing.models import Payment
from billing.pdf import EvseLabel, labels_pdf
from billing.services import payments
from billing.tasks import payments_sweep
from tests.factories import ChargingSessionFactory
from tests.payments.test_payment_flows import charge_session

LOCALE_DIR = Path(__file__).resolve().parents[2] / "cpms" / "locale"


def set_country(pay_world, country: str) -> None:
    pay_world.station.site.country = country
    pay_world.station.site.save(update_fields=["country"])


def evse_page(client, pay_world) -> str:
    response = client.get(reverse("pay:evse", args=[pay_world.evse.public_code]))
    assert response.status_code == 200
    return response.content.decode()


def pay(pay_world, language: str) -> payments.PaymentBegun:
    """A hold placed from the EVSE page in `language` (what the page passes), the charger told to start."""
    begun = payments.payment_begin(
        evse=pay_world.evse,
        card_token=pay_world.server.card_token(),
        email="driver@example.com",
        language=language,
    )
    assert begun.payment.status == PaymentStatus.AUTHORISED
    return begun


def pdf_text(data: bytes) -> str:
    document = pypdfium2.PdfDocument(data)
    try:
        return " ".join(" ".join(page.get_textpage().get_text_range().split()) for page in document)
    finally:
        document.close()


# --- the EVSE page: the site's language ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("country", "lang", "texts"),
    [
        (
            "DE",
            "de",
            [
                'data-testid="evse-state">Verfügbar<',
                '<h2 id="price-heading">Preis</h2>',
                '<th scope="row">Startgebühr</th><td>1,19 EUR</td>',
                '<th scope="row">Energie</th><td>0,357 EUR pro kWh</td>',
                'data-testid="vat-note">Alle Preise inkl. 19 % MwSt. Es gilt der Preis zu Beginn des '
                "Ladevorgangs.<",
                'Wir reservieren <strong data-testid="hold">50,00 EUR</strong> auf Ihrer Karte.',
                '<label for="email">E-Mail für die Quittung (optional)</label>',
                '<button type="submit" id="pay-button">Jetzt bezahlen und laden</button>',
                'data-card-refused="Die Karte wurde nicht akzeptiert."',
            ],
        ),
        (
            "FR",
            "fr",
            [
                'data-testid="evse-state">Disponible<',
                '<th scope="row">Frais de session</th><td>1,19 EUR</td>',
                '<th scope="row">Énergie</th><td>0,357 EUR par kWh</td>',
                'data-testid="vat-note">Tous les prix incluent 19 % de TVA. Le prix en vigueur au début de la '
                "recharge s’applique.<",  # noqa: RUF001 (French apostrophe)
                'Nous réservons <strong data-testid="hold">50,00 EUR</strong> sur votre carte.',
                '<button type="submit" id="pay-button">Payer et lancer la recharge</button>',
            ],
        ),
        (
            "NL",
            "nl",
            [
                'data-testid="evse-state">Beschikbaar<',
                '<th scope="row">Starttarief</th><td>1,19 EUR</td>',
                '<th scope="row">Energie</th><td>0,357 EUR per kWh</td>',
                'data-testid="vat-note">Alle prijzen zijn inclusief 19 % btw.',
                '<button type="submit" id="pay-button">Betalen en laden starten</button>',
            ],
        ),
        (
            "",
            "en-us",
            [
                'data-testid="evse-state">Available<',
                '<th scope="row">Session fee</th><td>1.19 EUR</td>',
                '<th scope="row">Energy</th><td>0.357 EUR per kWh</td>',
                'data-testid="vat-note">All prices include 19 % VAT. The price in force when charging starts '
                "applies.<",
                'We reserve <strong data-testid="hold">50.00 EUR</strong> on your card.',
                '<button type="submit" id="pay-button">Pay and start charging</button>',
            ],
        ),
    ],
)
def test_the_evse_page_is_in_the_language_of_the_sites_country(pay_world, client, country, lang, texts):
    set_country(pay_world, country)
    text = evse_page(client, pay_world)
    assert f'<html lang="{lang}">' in text
    missing = [expected for expected in texts if expected not in text]
    assert missing == []


def test_a_country_without_a_catalog_of_ours_falls_back_to_english_texts(pay_world, client):
    # Spain has a language (numbers in Spanish format) but no catalog here yet: the texts stay English.
    set_country(pay_world, "ES")
    text = evse_page(client, pay_world)
    assert '<html lang="es">' in text
    assert '<button type="submit" id="pay-button">Pay and start charging</button>' in text
    assert '<th scope="row">Energy</th><td>0,357 EUR per kWh</td>' in text


def test_time_windows_and_idle_fees_are_in_the_sites_language(pay_world, client):
    from billing.models import TariffAssignment, TariffVersion
    from tests.payments.conftest import assign_adhoc_tariff

    set_country(pay_world, "DE")
    TariffAssignment.objects.filter(id_token_group=pay_world.settings.adhoc_group).delete()
    elements = [
        {
            "price_components": [{"type": "ENERGY", "price": "0.40", "step_size": 1}],
            "restrictions": {"start_time": "08:00", "end_time": "20:00", "day_of_week": ["MONDAY", "FRIDAY"]},
        },
        {
            "price_components": [{"type": "ENERGY", "price": "0.30", "step_size": 1}],
            "restrictions": {"max_duration": 5400, "min_kwh": 2.5},
        },
        {"price_components": [{"type": "PARKING_TIME", "price": "6.00", "step_size": 60}]},
    ]
    assign_adhoc_tariff(pay_world.organisation, pay_world.settings, elements, tax="0.20", name="Peak")
    TariffVersion.objects.filter(tariff__name="Peak").update(parking_grace_s=1800)
    text = evse_page(client, pay_world)
    assert 'Energie<br><span class="when">Mo, Fr; 08:00-20:00</span></th><td>0,48 EUR pro kWh</td>' in text
    assert 'Energie<br><span class="when">ab 2,5 kWh; in den ersten 90 Min.</span></th>' in text
    assert "Blockiergebühr nach 30 Min. ohne Laden</th><td>7,20 EUR pro Stunde</td>" in text


def test_a_busy_charger_and_a_refused_payment_are_told_in_the_sites_language(pay_world, client):
    set_country(pay_world, "DE")
    ChargingSessionFactory(station=pay_world.station, evse=pay_world.evse, status="active")
    text = evse_page(client, pay_world)
    assert 'data-testid="evse-state">Belegt<' in text
    assert "Diese Ladestation kann gerade keinen Ladevorgang starten. Status: Belegt." in text
    response = client.post(
        reverse("pay:evse", args=[pay_world.evse.public_code]), {"card_token": pay_world.server.card_token()}
    )
    assert response.status_code == 400
    assert 'role="alert" data-testid="pay-error">Diese Ladestation ist gerade nicht verfügbar.<' in (
        response.content.decode()
    )
    assert not Payment.objects.exists()


def test_a_charger_without_card_payment_says_so_in_the_sites_language(pay_world, client):
    set_country(pay_world, "FR")
    pay_world.settings.enabled = False
    pay_world.settings.save(update_fields=["enabled"])
    text = evse_page(client, pay_world)
    assert 'data-testid="not-offered">Le paiement par carte n’est pas proposé sur cette borne.<' in text  # noqa: RUF001
    assert 'id="pay-form"' not in text


# --- the payment's pages: the language the driver paid in ------------------------------------------------


def test_the_live_page_is_in_the_language_the_driver_paid_in(pay_world, client, fake_charger):
    # The site has no country (English), the driver paid on a French page: the payment keeps French.
    begun = pay(pay_world, "fr")
    live = reverse("pay:live", args=[begun.access_key])
    text = client.get(live).content.decode()
    assert '<html lang="fr">' in text
    assert 'data-testid="payment-status" id="status-text">Montant réservé<' in text
    assert "Montant réservé. Branchez votre véhicule : la recharge va commencer." in text
    assert "Conservez l’adresse de cette page" in text  # noqa: RUF001

    assert payments.payment_start_charging(payment_id=begun.payment.pk) == "accepted"
    session = ChargingSessionFactory(
        station=pay_world.station,
        evse=pay_world.evse,
        id_token=begun.payment.id_token,
        status="active",
        meter_start_wh=1000,
        meter_last_wh=3500,
    )
    text = client.get(live).content.decode()
    assert 'data-testid="payment-status" id="status-text">Recharge en cours<' in text
    assert '<dt>Énergie</dt><dd data-testid="energy" id="energy">2,500 kWh</dd>' in text
    assert "<dt>Coût actuel</dt>" in text
    assert 'data-testid="stop">Arrêter la recharge</button>' in text
    status = client.get(reverse("pay:live-status", args=[begun.access_key])).json()
    assert (status["status_text"], status["energy"]) == ("Recharge en cours", "2,500 kWh")
    assert session.pk


def test_a_release_reason_written_by_the_worker_is_shown_in_the_drivers_language(
    pay_world, client, fake_charger
):
    begun = pay(pay_world, "de")
    assert payments.payment_start_charging(payment_id=begun.payment.pk) == "accepted"
    Payment.objects.filter(pk=begun.payment.pk).update(authorised_at=timezone.now() - timedelta(seconds=121))
    assert payments_sweep()["released"] == 1
    # Stored as the worker wrote it (no language of its own: English), for the operator's views.
    assert Payment.objects.get(pk=begun.payment.pk).failure == "No charging session started in time."
    text = client.get(reverse("pay:live", args=[begun.access_key])).content.decode()
    assert 'data-testid="payment-status" id="status-text">Reservierung freigegeben<' in text
    assert (
        '<p data-testid="released">Es wurde nicht geladen. Der reservierte Betrag von 50,00 EUR wurde '
        "freigegeben: Der Ladevorgang hat nicht rechtzeitig begonnen.</p>"
    ) in text


def test_a_refused_stop_is_explained_in_the_drivers_language(pay_world, client, fake_charger):
    begun = pay(pay_world, "nl")
    response = client.post(reverse("pay:stop", args=[begun.access_key]))
    assert response.status_code == 409
    assert '<p class="error" role="alert">Er loopt geen laadsessie bij deze betaling.</p>' in (
        response.content.decode()
    )
    assert fake_charger.received == []


def test_the_receipt_page_pdf_and_mail_are_in_the_language_the_driver_paid_in(
    pay_world, client, fake_charger, mailoutbox
):
    from billing.services.receipts import payment_receipt_email

    begun = pay(pay_world, "de")
    assert payments.payment_start_charging(payment_id=begun.payment.pk) == "accepted"
    charge_session(begun.payment, wh=10_000)
    payments_sweep()
    number = f"R-org-a-{begun.payment.pk}"

    text = client.get(reverse("pay:receipt", args=[begun.access_key])).content.decode()
    assert '<html lang="de">' in text
    assert f'<h1>Quittung <span data-testid="receipt-number">{number}</span></h1>' in text
    assert "<br>USt-IdNr. DE123456789</p>" in text
    assert '<dt>Energie</dt><dd data-testid="receipt-energy">10,000 kWh</dd>' in text
    for row in (
        '<th scope="row">Startgebühr</th><td>1,00 EUR</td>',
        '<th scope="row">Energie 10,000 kWh x 0,30 EUR/kWh</th><td>3,00 EUR</td>',
        '<th scope="row">Zwischensumme (ohne MwSt.)</th><td>4,00 EUR</td>',
        '<th scope="row">MwSt. 19 %</th><td data-testid="receipt-tax">0,76 EUR</td>',
        '<tr class="total"><th scope="row">Gesamt</th><td data-testid="receipt-total">4,76 EUR</td>',
    ):
        assert row in text

    pdf = client.get(reverse("pay:receipt-pdf", args=[begun.access_key]))
    assert (pdf.status_code, pdf["Content-Type"]) == (200, "application/pdf")
    flat = pdf_text(pdf.content)
    for expected in (
        "USt-IdNr.: DE123456789",
        f"Quittung {number}",
        "Standort A1",
        "Zählerstand Beginn 1,000 kWh",
        "Zählerstand Ende 11,000 kWh",
        "Energie 10,000 kWh",
        "Kosten",
        "Startgebühr 1,00 €",
        "Energie 10,000 kWh x 0,30 EUR/kWh 3,00 €",
        "Zwischensumme (ohne MwSt.) 4,00 €",
        "MwSt. 19 % 0,76 €",
        "Gesamt (inkl. MwSt.) 4,76 €",
        "Zahlung",
        "Abgebucht 4,76 €",
        "Erstattet 0,00 €",
    ):
        assert expected in flat, (expected, flat)
    assert "Total" not in flat and "Receipt" not in flat

    assert payment_receipt_email(payment_id=begun.payment.pk) == "sent"
    [mail] = mailoutbox
    assert mail.subject == f"Ihre Ladequittung {number}"
    assert mail.body.startswith("Vielen Dank, dass Sie bei Org A Charging GmbH geladen haben.\n\n")
    assert "Energie: 10,000 kWh\nGesamt: 4,76 EUR (inkl. 0,76 EUR MwSt.)\nMit Karte bezahlt: 4,76 EUR\n" in (
        mail.body
    )
    [(_name, content, _mimetype)] = mail.attachments
    assert "Gesamt (inkl. MwSt.) 4,76 €" in pdf_text(content)


def test_the_receipt_of_an_english_payment_stays_english(pay_world, client, fake_charger):
    begun = pay(pay_world, "")
    assert payments.payment_start_charging(payment_id=begun.payment.pk) == "accepted"
    charge_session(begun.payment, wh=10_000)
    payments_sweep()
    text = client.get(reverse("pay:receipt", args=[begun.access_key])).content.decode()
    assert '<html lang="en-us">' in text
    assert '<th scope="row">Energy 10.000 kWh x 0.30 EUR/kWh</th><td>3.00 EUR</td>' in text
    flat = pdf_text(client.get(reverse("pay:receipt-pdf", args=[begun.access_key])).content)
    assert "Total (incl. VAT) €4.76" in flat and "Gesamt" not in flat


# --- the label sheet's line -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "line"),
    [
        ("de", "Scannen, bezahlen und laden"),
        ("fr", "Scannez pour payer et recharger"),
        ("nl", "Scan om te betalen en te laden"),
        ("en", "Scan to pay and charge"),
    ],
)
def test_the_label_line_is_in_the_active_language(language, line):
    with translation.override(language):
        pdf = labels_pdf(
            title="A1", labels=[EvseLabel(evse_label="A1-CP1 EVSE 1", url="https://x.test/c/abc/")]
        )
    assert f"A1 A1-CP1 EVSE 1 {line} https://x.test/c/abc/" in pdf_text(pdf)


# --- the catalogs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["de", "fr", "nl"])
def test_every_text_of_each_catalog_is_translated_with_its_placeholders(language):
    from babel.messages.pofile import read_po

    with (LOCALE_DIR / language / "LC_MESSAGES" / "django.po").open("rb") as source:
        catalog = read_po(source, locale=language)
    messages = [message for message in catalog if message.id]
    assert len(messages) > 100
    assert [message.id for message in messages if not message.string or message.fuzzy] == []
    assert [(message.id, errors) for message, errors in catalog.check()] == []
    for message in messages:
        assert sorted(re.findall(r"%\(\w+\)s", message.id)) == sorted(
            re.findall(r"%\(\w+\)s", message.string)
        )


def test_compile_translations_builds_each_mo_once_and_refuses_a_broken_placeholder(tmp_path, monkeypatch):
    from cpms.management.commands import compile_translations

    good = tmp_path / "de" / "LC_MESSAGES" / "django.po"
    good.parent.mkdir(parents=True)
    good.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        'msgid "%(price)s per kWh"\nmsgstr "%(price)s pro kWh"\n',
        encoding="utf-8",
    )
    monkeypatch.setattr(compile_translations, "LOCALE_DIR", tmp_path)
    call_command("compile_translations", stdout=(out := _Out()))
    assert out.text.splitlines()[-1] == "1 of 1 catalogs compiled (0 up to date)"
    mo = good.with_suffix(".mo")
    from babel.messages.mofile import read_mo

    with mo.open("rb") as source:
        assert read_mo(source).get("%(price)s per kWh").string == "%(price)s pro kWh"
    built = mo.stat().st_mtime_ns
    call_command("compile_translations", stdout=(out := _Out()))
    assert out.text.splitlines()[-1] == "0 of 1 catalogs compiled (1 up to date)"
    assert mo.stat().st_mtime_ns == built

    broken = tmp_path / "fr" / "LC_MESSAGES" / "django.po"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        '#, python-format\nmsgid "%(price)s per kWh"\nmsgstr "%(prix)s par kWh"\n',
        encoding="utf-8",
    )
    with pytest.raises(CommandError, match="price"):
        call_command("compile_translations", stdout=_Out())
    assert not broken.with_suffix(".mo").exists()


class _Out:
    def __init__(self):
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text if text.endswith("\n") else text + "\n"

    def flush(self) -> None:
        pass
