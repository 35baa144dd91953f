"""The printable PDFs of ad-hoc charging: QR labels for the EVSEs and the driver's receipt. In billing (like the
CSV exports) because the receipt mail is sent by a billing job; the portal serves the labels.

Pure: typed values in, PDF bytes out; no database, no request. Only reportlab's 14 built-in fonts are used
(nothing to install, the same output on every machine). Those fonts are WinAnsi (cp1252) encoded: the euro
and pound signs are in it; a character that is not (e.g. "Ł") is written as its unaccented letter where
Unicode decomposes it, else "?", rather than the black box reportlab would draw. The output is invariant
(no creation date or random document id), so the same input gives the same bytes.

The texts are in the active language (`translation.override` around the call), numbers in its format too.
"""

import io
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from xml.sax.saxutils import escape

import segno
from django.utils import formats, translation
from django.utils.translation import gettext, gettext_lazy
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from billing.types import Receipt

FONT = "Helvetica"
FONT_BOLD = "Helvetica-Bold"
SCAN_LINE = gettext_lazy("Scan to pay and charge")

# Labels: 2 x 4 per A4 page, each 105 x 74.25 mm, the cells of the common 8-up label sheets (no page margin),
# so that a sheet of those prints one label per sticker; on plain paper the cut lines are drawn.
LABEL_COLUMNS, LABEL_ROWS = 2, 4
LABEL_W, LABEL_H = A4[0] / LABEL_COLUMNS, A4[1] / LABEL_ROWS
LABEL_PAD = 5 * mm
# 52 mm: ~1.4 mm per module for a 40-character URL (version 3 with its 4-module quiet zone), readable by a
# phone from about half a metre.
QR_SIZE = 52 * mm

CURRENCY_SYMBOLS = {"EUR": "€", "GBP": "£", "USD": "$"}
# Letters outside WinAnsi that Unicode does not decompose into a base letter and an accent.
UNDECOMPOSABLE = {
    "Ł": "L",
    "ł": "l",
    "Đ": "D",
    "đ": "d",
    "Ħ": "H",
    "ħ": "h",
    "\u0131": "i",
    "Ŧ": "T",
    "ŧ": "t",
}


@dataclass(frozen=True, slots=True)
class EvseLabel:
    """One label: the EVSE's name as drivers read it (stations.selectors.evse_label) and its public URL."""

    evse_label: str
    url: str


# --- labels ------------------------------------------------------------------------------------------


def labels_pdf(*, title: str, labels: list[EvseLabel]) -> bytes:
    """A4 sheet(s) of labels in reading order, 8 per page: each the QR code of its URL, the EVSE's name in
    large text beside it, "Scan to pay and charge" and the URL in small text (for a phone that cannot scan),
    and `title` (e.g. the site) at its top. `title` is also the document's title. No labels: one empty page
    saying so (a PDF has at least one page)."""
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, invariant=True)
    canvas.setTitle(_text(title))
    if not labels:
        canvas.setFont(FONT, 12)
        canvas.drawString(
            20 * mm, A4[1] - 30 * mm, _text(gettext("%(title)s: no EVSEs to label.") % {"title": title})
        )
    per_page = LABEL_COLUMNS * LABEL_ROWS
    for start in range(0, len(labels), per_page):
        if start:
            canvas.showPage()
        for index, label in enumerate(labels[start : start + per_page]):
            row, column = divmod(index, LABEL_COLUMNS)
            _label_draw(canvas, title, label, x=column * LABEL_W, y=A4[1] - (row + 1) * LABEL_H)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def _label_draw(canvas: Canvas, title: str, label: EvseLabel, *, x: float, y: float) -> None:
    canvas.setStrokeColor(colors.lightgrey)
    canvas.setLineWidth(0.3)
    canvas.rect(x, y, LABEL_W, LABEL_H)  # the cut line
    qr_x, qr_y = x + LABEL_PAD, y + (LABEL_H - QR_SIZE) / 2
    _qr_draw(canvas, label.url, x=qr_x, y=qr_y, size=QR_SIZE)

    text_x = qr_x + QR_SIZE + 3 * mm
    width = x + LABEL_W - LABEL_PAD - text_x
    top = y + LABEL_H - LABEL_PAD
    canvas.setFillColor(colors.black)
    canvas.setFont(FONT, 7)
    canvas.drawString(text_x, top - 7, _fit(_text(title), FONT, 7, width))

    size, lines = _wrapped_to_fit(_text(label.evse_label), FONT_BOLD, width, sizes=(24, 20, 17, 14, 12, 10))
    line_y = top - 12 - size
    canvas.setFont(FONT_BOLD, size)
    for line in lines:
        canvas.drawString(text_x, line_y, line)
        line_y -= size * 1.15

    line_y -= 4
    canvas.setFont(FONT, 9)
    canvas.drawString(text_x, line_y, _text(str(SCAN_LINE)))
    line_y -= 11
    canvas.setFont(FONT, 6.5)
    for line in _wrap_chars(_text(label.url), FONT, 6.5, width):
        canvas.drawString(text_x, line_y, line)
        line_y -= 8


def _qr_draw(canvas: Canvas, data: str, *, x: float, y: float, size: float) -> None:
    """The QR code of `data` as vector rectangles (one per horizontal run of dark modules, so that renderers
    leave no seams between modules), `size` wide including the 4-module quiet zone of ISO/IEC 18004."""
    qr = segno.make(data, error="m", micro=False)
    rows = [list(row) for row in qr.matrix_iter(scale=1, border=4)]
    module = size / len(rows)
    canvas.setFillColor(colors.white)
    canvas.rect(x, y, size, size, stroke=0, fill=1)
    canvas.setFillColor(colors.black)
    path = canvas.beginPath()
    for row_index, row in enumerate(rows):
        top = y + size - row_index * module
        column = 0
        while column < len(row):
            if not row[column]:
                column += 1
                continue
            run = column
            while run < len(row) and row[run]:
                run += 1
            path.rect(x + column * module, top - module, (run - column) * module, module)
            column = run
    canvas.drawPath(path, stroke=0, fill=1)


# --- receipt -----------------------------------------------------------------------------------------


def receipt_pdf(receipt: Receipt) -> bytes:
    """The driver's A4 receipt for one paid session: the operator (name, address, VAT id), the receipt
    number, where (site, EVSE) and when (start and stop in the site's time zone, named), the meter readings
    and energy, the priced lines, subtotal, VAT with its rate, total, what was captured and refunded, the
    card, and the tariff. Amounts are as given (the CDR's), in its currency."""
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
        title=_text(gettext("Receipt %(number)s") % {"number": receipt.number}),
        author=_text(receipt.operator_name),
        invariant=True,
    )
    body = ParagraphStyle("body", fontName=FONT, fontSize=10, leading=13)
    small = ParagraphStyle("small", parent=body, fontSize=9, leading=11.5)
    heading = ParagraphStyle("heading", parent=body, fontName=FONT_BOLD, fontSize=16, leading=20)
    section = ParagraphStyle("section", parent=body, fontName=FONT_BOLD, fontSize=11, leading=15)
    money = _money_of(receipt.currency)
    zone = receipt.time_zone

    operator = [f"<b>{_para(receipt.operator_name)}</b>"]
    operator += [_para(line) for line in receipt.operator_address.splitlines() if line.strip()]
    if receipt.operator_vat_id:
        operator.append(_para(gettext("VAT id: %(vat_id)s") % {"vat_id": receipt.operator_vat_id}))
    story: list = [
        Paragraph("<br/>".join(operator), body),
        Spacer(1, 8 * mm),
        Paragraph(_para(gettext("Receipt %(number)s") % {"number": receipt.number}), heading),
        Spacer(1, 4 * mm),
    ]

    facts = [
        (gettext("Site"), receipt.site_name + (f", {receipt.site_address}" if receipt.site_address else "")),
        (gettext("Charge point"), receipt.evse_label),
        (gettext("Time zone"), zone),
        (gettext("Session start"), _local(receipt.started_at_local, zone)),
        (gettext("Session stop"), _local(receipt.stopped_at_local, zone)),
        (gettext("Meter start"), _kwh(receipt.meter_start_kwh)),
        (gettext("Meter stop"), _kwh(receipt.meter_stop_kwh)),
        (gettext("Energy"), _kwh(receipt.energy_kwh)),
        (gettext("Tariff"), receipt.tariff_label),
    ]
    story += [
        _table([(label, Paragraph(_para(value), small)) for label, value in facts], small),
        Spacer(1, 6 * mm),
    ]

    story.append(Paragraph(_para(gettext("Charges")), section))
    # Not inside the f-string below: xgettext (makemessages) does not find a gettext call in one.
    total_label = gettext("Total (incl. VAT)")
    rows = [(Paragraph(_para(line.label), small), money(line.amount)) for line in receipt.lines]
    rows += [
        (Paragraph(_para(gettext("Subtotal (excl. VAT)")), small), money(receipt.subtotal)),
        (
            Paragraph(_para(gettext("VAT %(percent)s %%") % {"percent": _percent(receipt.tax_rate)}), small),
            money(receipt.tax),
        ),
        (Paragraph(f"<b>{_para(total_label)}</b>", small), money(receipt.total)),
    ]
    story += [_amounts_table(rows, len(receipt.lines), small), Spacer(1, 6 * mm)]

    story.append(Paragraph(_para(gettext("Payment")), section))
    payment = [(gettext("Captured"), money(receipt.captured)), (gettext("Refunded"), money(receipt.refunded))]
    if receipt.card_hint:
        payment.append((gettext("Card"), _text(receipt.card_hint)))
    story.append(_table(payment, small))
    document.build(story)
    return buffer.getvalue()


def _table(rows: Sequence[tuple[str, object]], style: ParagraphStyle) -> Table:
    data = [[_text(label), value] for label, value in rows]
    table = Table(data, colWidths=[40 * mm, 130 * mm], hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), style.fontName, style.fontSize),
                ("TEXTCOLOR", (0, 0), (0, -1), colors.dimgrey),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
            ]
        )
    )
    return table


def _amounts_table(rows: Sequence[tuple[object, str]], line_count: int, style: ParagraphStyle) -> Table:
    table = Table([list(row) for row in rows], colWidths=[135 * mm, 35 * mm], hAlign="LEFT", repeatRows=0)
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), style.fontName, style.fontSize),
                ("FONT", (1, -1), (1, -1), FONT_BOLD, style.fontSize),
                ("ALIGN", (1, 0), (1, -1), "RIGHT"),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("RIGHTPADDING", (0, 0), (-1, -1), 0),
                ("LINEABOVE", (0, line_count), (-1, line_count), 0.5, colors.grey),
                ("LINEABOVE", (0, -1), (-1, -1), 0.8, colors.black),
            ]
        )
    )
    return table


# --- text --------------------------------------------------------------------------------------------


def _money_of(currency: str):
    """Amounts as the active language writes them: English "€4.76" (the symbol first), others "4,76 €";
    a currency without a symbol here as "4.76 CHF" / "4,76 CHF"."""
    symbol = CURRENCY_SYMBOLS.get(currency)
    symbol_first = (translation.get_language() or "en").startswith("en")

    def money(amount: Decimal) -> str:
        # Two decimals unless the amount has more (shown as given: a receipt never rounds the CDR again).
        digits = f"{amount:.2f}" if amount == amount.quantize(Decimal("0.01")) else f"{amount:f}"
        sign, digits = ("-", digits[1:]) if digits.startswith("-") else ("", digits)
        digits = _number(Decimal(digits))
        if symbol and symbol_first:
            return f"{sign}{symbol}{digits}"
        return f"{sign}{digits} {symbol or currency}"

    return money


def _number(value: Decimal) -> str:
    """`value` with its digits as given, in the active language's format (de "4,76", en "4.76")."""
    return formats.number_format(value, use_l10n=True)


def _percent(rate: Decimal) -> str:
    """0.19 -> "19", 0.077 -> "7.7" (de "7,7"), 0.1 -> "10" (normalize alone would give "1E+1")."""
    return _number(Decimal(f"{(rate * 100).normalize():f}"))


def _kwh(value: Decimal | None) -> str:
    return gettext("not reported") if value is None else f"{_number(value)} kWh"


def _local(moment: datetime, zone: str) -> str:
    """ "2025-03-01 10:00:00 Europe/Berlin": the time as the site's clock showed it, and which clock."""
    return f"{moment:%Y-%m-%d %H:%M:%S} {zone}"


def _text(value: str) -> str:
    """`value` with every character the built-in fonts' WinAnsi encoding lacks replaced (module docstring)."""
    out = []
    for char in value:
        if _encodable(char):
            out.append(char)
            continue
        base = "".join(part for part in unicodedata.normalize("NFKD", char) if _encodable(part))
        out.append(base or UNDECOMPOSABLE.get(char, "?"))
    return "".join(out)


def _encodable(char: str) -> bool:
    try:
        char.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return unicodedata.category(char) != "Cc" or char in "\n\t"


def _para(value: str) -> str:
    """Plain text for a Paragraph (which reads a little XML)."""
    return escape(_text(value))


def _fit(text: str, font: str, size: float, width: float) -> str:
    """`text` cut to `width` with an ellipsis."""
    if stringWidth(text, font, size) <= width:
        return text
    while text and stringWidth(text + "...", font, size) > width:
        text = text[:-1]
    return text + "..."


def _wrapped_to_fit(text: str, font: str, width: float, *, sizes: Iterable[float]) -> tuple[float, list[str]]:
    """The largest of `sizes` at which `text` wraps at spaces into at most 3 lines of `width`; at the smallest,
    words longer than a line are broken between characters."""
    sizes = list(sizes)
    for size in sizes:
        lines = _wrap_words(text, font, size, width)
        if len(lines) <= 3 and all(stringWidth(line, font, size) <= width for line in lines):
            return size, lines
    size = sizes[-1]
    return size, [
        part for line in _wrap_words(text, font, size, width) for part in _wrap_chars(line, font, size, width)
    ]


def _wrap_words(text: str, font: str, size: float, width: float) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and stringWidth(f"{lines[-1]} {word}", font, size) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def _wrap_chars(text: str, font: str, size: float, width: float) -> list[str]:
    """Lines of `text` broken between any two characters (a URL has no spaces)."""
    lines = [""]
    for char in text:
        if lines[-1] and stringWidth(lines[-1] + char, font, size) > width:
            lines.append("")
        lines[-1] += char
    return lines
