"""Plain HTTP endpoints for chargers (not the API): firmware downloads and diagnostics/log uploads.

Chargers cannot send our API credentials: the random token in the URL is the credential, and the only one.
Answers are short plain text; a charger logs them at best.
"""

import tempfile

from django.core.files import File
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBase
from django.http.multipartparser import MultiPartParserError
from django.utils.http import content_disposition_header
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from cpms.errors import DomainError
from stations.selectors import diagnostics_upload_by_token, firmware_file_by_token
from stations.services.firmware import diagnostics_upload_store, max_upload_bytes

CHUNK_BYTES = 64 * 1024
# Room for the multipart envelope (boundaries, part headers, small fields) around the file itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def _text(status: int, message: str) -> HttpResponse:
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")


@require_http_methods(["GET", "HEAD"])
def firmware_download(request: HttpRequest, token: str, filename: str) -> HttpResponseBase:
    """GET/HEAD /firmware/<token>/<file name>: the image (the file name in the URL is for the charger's
    benefit; the token alone selects the file)."""
    firmware = firmware_file_by_token(token=token)
    if firmware is None:
        return _text(404, "Unknown firmware URL.")
    stored = firmware.file.name
    if not stored:  # the file is required: a row without one is as good as a missing file
        return _text(404, "The firmware file is missing.")
    name = stored.rsplit("/", 1)[-1]
    response: HttpResponseBase
    if request.method == "HEAD":
        # Chargers check the size before downloading; the file is not opened for that.
        response = HttpResponse(content_type="application/octet-stream")
        response["Content-Length"] = str(firmware.size_bytes)
        response["Content-Disposition"] = content_disposition_header(True, name)
    else:
        try:
            handle = firmware.file.storage.open(stored, "rb")
        except FileNotFoundError:
            return _text(404, "The firmware file is missing.")
        response = FileResponse(
            handle, as_attachment=True, filename=name, content_type="application/octet-stream"
        )
    response["ETag"] = f'"{firmware.sha256}"'
    return response


class _SizeLimit(FileUploadHandler):
    """Stops a multipart upload once its files pass `limit` bytes, instead of spooling all of it to disk."""

    def __init__(self, request, limit: int):
        super().__init__(request)
        self.limit = limit
        self.received = 0
        self.exceeded = False

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.limit:
            self.exceeded = True
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size):
        return None


def _body_to_file(request, limit: int):
    """The raw request body in a temporary file, or None when it is larger than `limit`. Read in chunks
    from the stream: request.body would hold it all in memory (and refuse it past
    DATA_UPLOAD_MAX_MEMORY_SIZE)."""
    spool = tempfile.TemporaryFile()  # noqa: SIM115 (handed to the caller, who closes it)
    size = 0
    while chunk := request.read(CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            spool.close()
            return None
        spool.write(chunk)
    spool.seek(0)
    return spool


def _declared_length(request) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


@csrf_exempt
@require_http_methods(["PUT", "POST"])
def ocpp_upload(request, token: str, filename: str = ""):
    """The charger's upload of a diagnostics or log file: `PUT /ocpp-upload/<token>/<file name>` with the
    file as the body, or `POST /ocpp-upload/<token>/` with multipart/form-data (the first file field).
    404 for an unknown token, 409 once the token has been used, 413 past CPMS_MAX_UPLOAD_BYTES."""
    upload = diagnostics_upload_by_token(token=token)
    if upload is None:
        return _text(404, "Unknown upload URL.")
    if upload.uploaded_at is not None:
        return _text(409, "This upload URL has been used.")
    limit = max_upload_bytes()
    multipart = request.method == "POST" and request.content_type == "multipart/form-data"
    declared = _declared_length(request)
    if declared is not None and declared > limit + (MULTIPART_OVERHEAD_BYTES if multipart else 0):
        return _text(413, f"Uploads are limited to {limit} bytes.")
    spool = None
    if multipart:
        guard = _SizeLimit(request, limit)
        request.upload_handlers.insert(0, guard)
        try:
            files = request.FILES
        except MultiPartParserError:
            return _text(400, "Unreadable multipart body.")
        if guard.exceeded:
            return _text(413, f"Uploads are limited to {limit} bytes.")
        first_field = next(iter(files), None)
        if first_field is None:
            return _text(400, "No file in the form.")
        content = files.getlist(first_field)[0]
        name = content.name or ""
    else:
        spool = _body_to_file(request, limit)
        if spool is None:
            return _text(413, f"Uploads are limited to {limit} bytes.")
        name = filename
        content = File(spool, name=name or "upload")
    try:
        diagnostics_upload_store(token=token, file_name=name, content=content)
    except DomainError as exc:
        return _text(exc.status_code, exc.message)
    finally:
        if spool is not None:
            spool.close()
    return _text(201, "Stored.")
