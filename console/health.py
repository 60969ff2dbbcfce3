"""Liveness and readiness: database, channel layer, broker."""

import asyncio
import time
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection

CHECK_TIMEOUT_S = 3.0


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        detail = check()
        ok = True
    except Exception as exc:  # noqa: BLE001 - a failing dependency is reported, not raised
        detail, ok = f"{type(exc).__name__}: {exc}"[:300], False
    return {"ok": ok, "detail": detail, "ms": round((time.perf_counter() - started) * 1000, 1)}


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def check_channel_layer() -> str:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")

    async def roundtrip():
        channel = await layer.new_channel("healthz.")
        token = uuid.uuid4().hex
        await layer.send(channel, {"type": "healthz", "token": token})
        message = await layer.receive(channel)
        if message.get("token") != token:
            raise RuntimeError("channel layer returned a different message")

    async def through_the_server():
        # No receive on a Redis layer: the process's long-lived receivers (approval waiters) hold
        # channels_redis's per-process receive lock, so a health receive could time out although Redis
        # is fine. A group add and discard goes to Redis and back just the same.
        channel = await layer.new_channel("healthz.")
        await layer.group_add("healthz", channel)
        await layer.group_discard("healthz", channel)

    async def bounded():
        # /healthz must answer "down", never hang on a half-broken layer.
        check = roundtrip if type(layer).__name__ == "InMemoryChannelLayer" else through_the_server
        await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_S)

    async_to_sync(bounded)()
    return type(layer).__name__


def check_broker() -> str:
    if settings.CONSOLE_SCHEDULER == "embedded":
        from console import scheduler

        return "embedded scheduler " + ("running" if scheduler.is_running() else "idle (starts with the server)")
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()
    return "redis"


def check_all() -> dict:
    checks = {
        "database": _timed(check_database),
        "channel_layer": _timed(check_channel_layer),
        "broker": _timed(check_broker),
    }
    return {
        "ok": all(c["ok"] for c in checks.values()),
        "mode": "embedded" if settings.EMBEDDED else "production",
        "checks": checks,
    }
