"""Settings for the Agent Ops Console, read from the environment.

Two modes, chosen by what the environment provides:

- embedded (no ``DATABASE_URL``): SQLite in the project folder, in-memory
  channel layer, background jobs run by a scheduler inside the server process;
- production (``DATABASE_URL`` and ``REDIS_URL``): PostgreSQL through psycopg 3
  with Django's connection pool, ``channels_redis``, Celery workers and beat.
"""

import ipaddress
import os
import sys
import warnings
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

# WhiteNoise streams static files with a sync iterator under ASGI; harmless, and noisy.
warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous iterators")

INSECURE_SECRET_KEY = "insecure-embedded-key-change-me"


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    value = env(name)
    if not value:
        return default
    return value.lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = env(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {value!r}") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    value = env(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DATABASE_URL = env("DATABASE_URL")
REDIS_URL = env("REDIS_URL")
EMBEDDED = not DATABASE_URL
TESTING = "pytest" in sys.modules or env_bool("CONSOLE_TESTING")

SECRET_KEY = env("SECRET_KEY", INSECURE_SECRET_KEY)
DEBUG = env_bool("DEBUG", default=EMBEDDED)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CONSOLE_BASE_URL = env("CONSOLE_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [CONSOLE_BASE_URL])

if not EMBEDDED and not TESTING:
    problems = []
    if SECRET_KEY == INSECURE_SECRET_KEY or len(SECRET_KEY) < 50:
        # 50: what Django's deploy check (security.W009) asks for.
        problems.append("SECRET_KEY is unset, the embedded default, or shorter than 50 characters")
    if DEBUG:
        problems.append("DEBUG is on")
    if not REDIS_URL:
        problems.append("REDIS_URL is unset (production needs Redis for the channel layer and Celery)")
    if problems:
        raise ImproperlyConfigured(
            "Refusing to start in production mode (DATABASE_URL is set): "
            + "; ".join(problems)
            + ". Fix these environment variables, or unset DATABASE_URL for the embedded mode."
        )

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "django_htmx",
    "template_partials",
    "ninja",
    "console",
    "agents",
    "traces",
    "approvals",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "console.middleware.ContentSecurityPolicyMiddleware",
    "console.middleware.RejectNulMiddleware",
    "console.middleware.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "console.urls"
ASGI_APPLICATION = "console.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "console.context_processors.console",
            ],
            "builtins": ["template_partials.templatetags.partials"],
        },
    }
]

# --- database -------------------------------------------------------------
if EMBEDDED:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env("CONSOLE_SQLITE_PATH", str(BASE_DIR / "console.sqlite3")),
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
else:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
    if env_bool("CONSOLE_DB_PREPARE", default=True):
        # Django turns psycopg's prepared statements off (prepare_threshold None, for transaction-mode
        # poolers), which also ignores execute(prepare=True). A threshold no query reaches prepares
        # only what asks for it: ingest's fixed statements, saving their parse and plan per batch.
        # Set CONSOLE_DB_PREPARE=0 behind a transaction-mode pooler without prepared-statement support
        # (PgBouncer before 1.21).
        DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 2**31 - 1
    if env_bool("CONSOLE_DB_POOL", default=not TESTING):
        # Under ASGI, CONN_MAX_AGE opens a connection per request; the pool does not.
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("CONSOLE_DB_POOL_MIN", 2),
            "max_size": env_int("CONSOLE_DB_POOL_MAX", 20),
            "timeout": 10,
        }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- channel layer, broker, background jobs ---------------------------------
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # socket_timeout above the layer's 5 s blocking pop: with redis-py's default of 5 s a
            # message popped just as the read times out is lost.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}], "capacity": 2000, "expiry": 30},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CONSOLE_SCHEDULER = "celery"
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 2000}}
    }
    CELERY_BROKER_URL = "memory://"
    CONSOLE_SCHEDULER = "embedded"

CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = CONSOLE_SCHEDULER == "embedded"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"

# --- auth, sessions, security -------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True  # htmx sends the token from the page (base.html hx-headers), never from the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
LOGIN_RATE_LIMIT = env_int("LOGIN_RATE_LIMIT", 10)  # failed attempts per username+IP per 15 min

if not EMBEDDED and not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not TESTING)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        # Preloading binds the whole domain to HTTPS in browsers for months: an owner's opt-in, not a default.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]

# --- i18n, time -------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- static files -------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(env("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if EMBEDDED or TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = EMBEDDED or TESTING

# --- e-mail -------------------------------------------------------------------
EMAIL_BACKEND = env(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if EMBEDDED
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "console@localhost")

# --- console limits -------------------------------------------------------------
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("API_MAX_BODY_BYTES", 1024 * 1024)
OTLP_MAX_BODY_BYTES = env_int("OTLP_MAX_BODY_BYTES", 64 * 1024 * 1024)
OTLP_MAX_CONCURRENT = env_int("OTLP_MAX_CONCURRENT", 8)  # ingests storing at once per process; then 503
OTLP_QUEUE_WAIT_S = float(env("OTLP_QUEUE_WAIT_S", "2"))  # how long a request waits for a slot before 503
OTLP_RETRY_AFTER_S = env_int("OTLP_RETRY_AFTER_S", 1)
TRACE_MAX_TEXT_CHARS = env_int("TRACE_MAX_TEXT_CHARS", 32 * 1024)  # span input/output text, then truncated
TRACE_MAX_FUTURE_SKEW_S = env_int("TRACE_MAX_FUTURE_SKEW_S", 3600)  # spans later than now + this are rejected
TRACE_RETENTION_DAYS = env_int("TRACE_RETENTION_DAYS", 30)
# An approved action holds its resource until its execution report, or this long after the decision.
APPROVALS_CONFLICT_RUNNING_S = env_int("APPROVALS_CONFLICT_RUNNING_S", 600)
APPROVALS_MAX_PENDING_PER_AGENT = env_int("APPROVALS_MAX_PENDING_PER_AGENT", 1000)  # then 429; 0: no limit
RUNS_SEARCH_TIMEOUT_MS = env_int("RUNS_SEARCH_TIMEOUT_MS", 5000)  # runs text search (PostgreSQL), then 400/field error
METRICS_BEARER_TOKEN = env("METRICS_BEARER_TOKEN")

# --- logging --------------------------------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "console.logging.JsonFormatter"},
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "json" if env_bool("LOG_JSON") else "plain",
        }
    },
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "uvicorn.access": {"level": env("ACCESS_LOG_LEVEL", "WARNING")},
    },
}

# --- periodic jobs ----------------------------------------------------------------
# name -> (dotted path of a job function taking keyword ``now``, interval in seconds).
# Celery beat runs them in production, console.scheduler in the embedded mode.
CONSOLE_JOBS = {
    "purge-login-attempts": ("console.jobs.purge_login_attempts", 3600),
    "traces-retention": ("traces.jobs.enforce_retention", 3600),
    "traces-redaction-counts": ("traces.jobs.flush_redaction_counts", 30),
    "approvals-sweep": ("approvals.jobs.sweep", 2),
    "approvals-deliver": ("approvals.jobs.deliver_pending_notifications", 2),
    "approvals-conflicts": ("approvals.jobs.release_stale_conflicts", 5),
    "push-dashboard-tiles": ("console.jobs.push_dashboard_tiles", 3),
    "prompts-canary-guard": ("agents.jobs.guard_canaries", 60),
    "prompts-webhooks": ("agents.jobs.deliver_prompt_webhooks", 10),
    "watchers-windows": ("traces.watchers.jobs.check_windows", 10),
    "watchers-sweep": ("traces.watchers.jobs.sweep_streams", 30),
    "watchers-baselines": ("traces.watchers.jobs.refresh_baselines", 60),
    "watchers-decisions": ("traces.watchers.jobs.watch_decisions", 2),
    "watchers-autonomy": ("traces.watchers.jobs.propose_autonomy", 300),
}
# Anomaly detectors on the ingest stream: background (a worker thread per process), inline, or off.
# Off under pytest unless a test turns it on, so other apps' tests never race a watcher thread.
WATCHERS_MODE = env("WATCHERS_MODE", "off" if TESTING else "background")
# Decisions each of canary and production need before the canary guard judges a canary.
PROMPTS_CANARY_MIN_SAMPLE = env_int("PROMPTS_CANARY_MIN_SAMPLE", 20)
# Webhooks are signed with HMAC-SHA256 (header X-Console-Signature); empty: derived from SECRET_KEY.
WEBHOOK_SIGNING_SECRET = env("WEBHOOK_SIGNING_SECRET")
# Webhooks (escalation levels, prompt labels) never reach internal addresses (loopback, private, link-local
# such as cloud metadata, CGNAT, ...; console.egress) unless listed here: host names and addresses or
# networks, comma-separated (e.g. "chat-relay.internal,10.20.0.0/16"). The embedded mode runs on one
# machine, so loopback receivers are allowed there by default; production allows none by default.
WEBHOOK_ALLOWED_PRIVATE_HOSTS = env_list("WEBHOOK_ALLOWED_PRIVATE_HOSTS", ["127.0.0.0/8", "::1"] if EMBEDDED else [])
for _entry in WEBHOOK_ALLOWED_PRIVATE_HOSTS:
    if "/" in _entry:
        try:
            ipaddress.ip_network(_entry.strip("[]"), strict=False)
        except ValueError as exc:
            raise ImproperlyConfigured(f"WEBHOOK_ALLOWED_PRIVATE_HOSTS: {_entry!r} is not a network ({exc})") from exc
CELERY_BEAT_SCHEDULE = {
    # A job that could not start within its own interval is dropped: the next one does its work.
    name: {"task": "console.run_job", "schedule": float(interval), "args": (name,),
           "options": {"expires": float(max(interval, 2))}}
    for name, (_path, interval) in CONSOLE_JOBS.items()
}

if TESTING:
    # The default hasher's 1M rounds would make every test user cost half a second.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
