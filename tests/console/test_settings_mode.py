"""The mode is chosen by the environment alone; an unsafe production start is refused."""

import json
import os
import subprocess
import sys

from django.conf import settings

PROBE = (
    "import json, console.settings as s; print(json.dumps({"
    "'engine': s.DATABASES['default']['ENGINE'], 'layer': s.CHANNEL_LAYERS['default']['BACKEND'],"
    "'scheduler': s.CONSOLE_SCHEDULER, 'broker': s.CELERY_BROKER_URL, 'embedded': s.EMBEDDED,"
    "'pool': 'pool' in s.DATABASES['default'].get('OPTIONS', {}), 'debug': s.DEBUG}))"
)

CLEAN_ENV = {k: v for k, v in os.environ.items()
             if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "CONSOLE_TESTING"}}


def probe(**env):
    result = subprocess.run([sys.executable, "-c", PROBE], env={**CLEAN_ENV, **env}, capture_output=True,
                            text=True, cwd=settings.BASE_DIR, timeout=60)
    return result


def test_no_settings_gives_the_embedded_mode():
    result = probe()
    assert result.returncode == 0, result.stderr
    mode = json.loads(result.stdout)
    assert mode["engine"] == "django.db.backends.sqlite3"
    assert mode["layer"] == "channels.layers.InMemoryChannelLayer"
    assert mode["scheduler"] == "embedded"
    assert mode["embedded"] is True


def test_database_and_redis_urls_give_production_with_pool_and_celery():
    result = probe(DATABASE_URL="postgres://u@db.example:5432/console", REDIS_URL="redis://cache:6379/0",
                   SECRET_KEY="x" * 50, DEBUG="false")
    assert result.returncode == 0, result.stderr
    mode = json.loads(result.stdout)
    assert mode["engine"] == "django.db.backends.postgresql"
    assert mode["layer"] == "channels_redis.core.RedisChannelLayer"
    assert mode["scheduler"] == "celery"
    assert mode["broker"] == "redis://cache:6379/0"
    assert mode["pool"] is True
    assert mode["debug"] is False


def test_production_refuses_the_default_secret_key_with_a_clear_message():
    result = probe(DATABASE_URL="postgres://u@db:5432/c", REDIS_URL="redis://r:6379/0", DEBUG="false")
    assert result.returncode != 0
    assert "Refusing to start in production mode" in result.stderr
    assert "SECRET_KEY" in result.stderr


def test_production_refuses_debug_on():
    result = probe(DATABASE_URL="postgres://u@db:5432/c", REDIS_URL="redis://r:6379/0",
                   SECRET_KEY="y" * 50, DEBUG="true")
    assert result.returncode != 0
    assert "DEBUG is on" in result.stderr


def test_production_without_redis_is_refused():
    result = probe(DATABASE_URL="postgres://u@db:5432/c", SECRET_KEY="z" * 50, DEBUG="false")
    assert result.returncode != 0
    assert "REDIS_URL" in result.stderr
