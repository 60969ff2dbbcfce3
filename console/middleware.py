"""Middleware of our own. All are async-capable, so that under ASGI the async
views (OTLP ingest, approval waits) never hold a thread for a whole request:
one sync-only middleware in the chain would make Django run the entire chain
in a thread per request."""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from whitenoise.middleware import WhiteNoiseMiddleware


class HybridMiddleware:
    """Sync and async capable: ``before(request)`` may answer instead of the view (a response) or
    let it go on (None); ``after(request, response)`` returns the response to send. Both are plain
    (sync) methods that must not block: under ASGI they run on the event loop."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return self.before(request) or self.after(request, self.get_response(request))

    async def _acall(self, request):
        return self.before(request) or self.after(request, await self.get_response(request))

    def before(self, request):
        return None

    def after(self, request, response):
        return response


class ContentSecurityPolicyMiddleware(HybridMiddleware):
    """No inline scripts, no third-party origins: agent content can never run.

    htmx's own indicator styles are disabled in the base layout, so
    ``style-src`` needs no ``unsafe-inline`` either.
    """

    POLICY = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    )

    def __init__(self, get_response):
        super().__init__(get_response)
        self.policy = getattr(settings, "CONTENT_SECURITY_POLICY", self.POLICY)

    def after(self, request, response):
        response.headers.setdefault("Content-Security-Policy", self.policy)
        return response


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, made async-capable: static files are looked up and opened in a
    thread, every other request goes straight on to the async handler."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None):
        super().__init__(get_response)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return super().__call__(request)

    def _find(self, path: str):
        return self.find_file(path) if self.autorefresh else self.files.get(path)

    async def _acall(self, request):
        if request.path_info.startswith(self.static_prefix):
            static_file = await sync_to_async(self._find, thread_sensitive=False)(request.path_info)
            if static_file is not None:
                return await sync_to_async(self.serve, thread_sensitive=False)(static_file, request)
        return await self.get_response(request)


NUL = "\x00"
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def nul_field(request) -> str | None:
    """The first place of ``request`` holding a NUL character: "path", a parameter's or form field's name."""
    if NUL in request.path:
        return "path"
    fields = [request.GET]
    if request.method == "POST" and request.content_type in _FORMS and not request.path.startswith(("/api/", "/v1/")):
        request.body  # noqa: B018 - read (and kept) first, so a view may still read the raw body after POST
        fields.append(request.POST)
    for data in fields:
        for key, values in data.lists():
            if NUL in key or any(NUL in value for value in values if isinstance(value, str)):
                return key.replace(NUL, "\\0") or "query"
    return None


class RejectNulMiddleware(HybridMiddleware):
    """A NUL (U+0000) in the path, a query parameter or a form field is answered 400 naming it.

    PostgreSQL stores no NUL in text: every filter, id or form value carrying one would
    otherwise reach a query and be a 500. (JSON bodies of the API are checked by its parser.)
    """

    def before(self, request):
        field = nul_field(request)
        if field is None:
            return None
        message = "must not contain NUL (U+0000) characters"
        if request.path.startswith(("/api/", "/v1/")):
            return JsonResponse({"detail": f"Invalid request: {field}: {message}",
                                 "errors": [{"field": field, "message": message}]}, status=400)
        return HttpResponse(f"Bad request: {field} {message}.\n", status=400, content_type="text/plain")
