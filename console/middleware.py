from django.conf import settings


class ContentSecurityPolicyMiddleware:
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
        self.get_response = get_response
        self.policy = getattr(settings, "CONTENT_SECURITY_POLICY", self.POLICY)

    def __call__(self, request):
        response = self.get_response(request)
        if not request.path.startswith(("/api/v1/docs",)):
            response.headers.setdefault("Content-Security-Policy", self.policy)
        return response
