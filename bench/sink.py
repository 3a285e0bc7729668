"""A bare aiosmtpd server that only counts (the baseline for figures 2 and 3).

It advertises PIPELINING like production relays do; aiosmtplib (the baseline
client) does not pipeline, resetd's outbox does when offered.

SMTP on argv[1]; a tiny HTTP control port on argv[2]: ``GET /stats`` returns
``{"count": N, "duplicates": D, "cpu_s": …}`` where duplicates counts recipients
seen more than once.
"""

from __future__ import annotations

import asyncio
import os
import sys
from functools import partial
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.seen: set[str] = set()
        self.duplicates = 0

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        # aiosmtpd reads commands line by line, so pipelined input works; say so,
        # as production relays (Postfix, Exim, the big providers) do.
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        for rcpt in envelope.rcpt_tos:
            if rcpt in self.seen:
                self.duplicates += 1
            self.seen.add(rcpt)
        return "250 OK"


async def main() -> None:
    smtp_port, http_port = int(sys.argv[1]), int(sys.argv[2])
    counter = Counter()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        partial(SMTP, counter, hostname="sink.bench", decode_data=False), "127.0.0.1", smtp_port
    )

    async def stats(request: web.Request) -> web.Response:
        t = os.times()
        return web.json_response(
            {"count": counter.count, "duplicates": counter.duplicates, "cpu_s": t.user + t.system}
        )

    async def reset(request: web.Request) -> web.Response:
        counter.__init__()  # type: ignore[misc]
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", http_port).start()
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        server.close()
        await runner.cleanup()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
