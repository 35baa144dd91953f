"""The public face of our certificate authorities: each CA's CRL (the URL in every certificate it issues,
crlDistributionPoints). No login: a CRL is public by design, and signed."""

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from cpms.errors import Conflict
from stations.models import CertificateAuthority
from stations.services.certificates import crl_for


@require_GET
def ca_crl(request: HttpRequest, pk: int) -> HttpResponse:
    ca = CertificateAuthority.objects.filter(pk=pk).first()
    if ca is None:
        raise Http404("No such CA.")
    try:
        der = crl_for(ca)
    except Conflict:
        # A trust anchor or an external CA: its owner publishes its CRL.
        raise Http404("This CA's CRL is not published here.") from None
    response = HttpResponse(der, content_type="application/pkix-crl")
    response["Cache-Control"] = "public, max-age=300"
    return response
