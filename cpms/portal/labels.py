"""Printable QR labels of a site's EVSEs: `GET /portal/sites/<pk>/labels.pdf`, for whoever may see the site
(the site page's access: site_access)."""

from django.http import HttpResponse
from django.utils import translation
from django.views.decorators.http import require_GET

from billing.pdf import EvseLabel, labels_pdf
from cpms.portal.base import PortalRequest, portal_view
from stations.selectors import evse_label, evse_public_url, site_access, site_evse_list, site_language


@portal_view
@require_GET
def site_labels_pdf(request: PortalRequest, pk: int) -> HttpResponse:
    """Every EVSE of every station of the site, by station identity then EVSE number: its QR code (the
    public URL, PUBLIC_BASE_URL or this request's host), its name and the URL, 8 labels per A4 page."""
    site = site_access(user=request.user, pk=pk)
    labels = [
        EvseLabel(evse_label=evse_label(evse), url=evse_public_url(evse, request))
        for evse in site_evse_list(site=site)
    ]
    # The drivers read the label: in the site's language, whatever the portal user's.
    with translation.override(site_language(site)):
        pdf = labels_pdf(title=site.name, labels=labels)
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="qr-labels-site-{site.pk}.pdf"'
    return response
