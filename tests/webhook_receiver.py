"""A real HTTP endpoint on loopback standing in for the app's webhook handler,
and the check the app makes of each delivery, written here without resetd's code."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

WEBHOOK_SECRET = "whsec-test-0123456789abcdef-0123456789abcdef"
HOOK_PATH = "/hooks/resetd"


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


def signature_ok(secret: str, header: str, body: bytes, tolerance: float = 300) -> bool:
    """What the app checks: ``t=…,v1=…`` is HMAC-SHA256 of ``"{t}.{body}"`` and
    ``t`` is near its clock."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    signed = fields["t"].encode() + b"." + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(fields["t"])) <= tolerance
    return hmac.compare_digest(expected, fields["v1"]) and fresh


class Receiver:
    """Answers each POST with the next of ``answers`` (then 204), recording what
    came. A 3xx answer points at ``/elsewhere``, which records too."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.answers = list(answers or [])
        self.received: list[Delivery] = []
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._stall: asyncio.Event | None = None
        self.port = 0

    def stall_first(self) -> asyncio.Event:
        """The first POST is recorded, then answered only once the returned event
        is set (a slow app, or one a crash of the sender cuts off)."""
        self._stall = asyncio.Event()
        return self._stall

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{HOOK_PATH}"

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(Delivery(request.path, dict(request.headers), body))
        self.arrived.set()
        stall, self._stall = self._stall, None
        if stall is not None:
            await stall.wait()
        status = self.answers.pop(0) if self.answers else 204
        if 300 <= status < 400:
            return web.Response(status=status, headers={"Location": "/elsewhere"})
        return web.Response(status=status)

    async def start(self, port: int = 0) -> int:
        app = web.Application()
        app.router.add_post(HOOK_PATH, self._hook)
        app.router.add_route("*", "/elsewhere", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Delivery]:
        async def enough() -> None:
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), timeout)
        return self.received
