from datetime import datetime, timedelta

from console.models import LoginAttempt


def purge_login_attempts(*, now: datetime) -> int:
    """Drop failed-login records older than a day; idempotent."""
    deleted, _ = LoginAttempt.objects.filter(at__lt=now - timedelta(days=1)).delete()
    return deleted


def push_dashboard_tiles(*, now: datetime) -> int:
    """Refresh the live dashboard tiles of every open browser; idempotent."""
    from console import dashboard

    return dashboard.push_tiles(now=now)
