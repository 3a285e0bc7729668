"""Large mail into a real ``resetd serve``: memory stays bounded, every byte is stored.

Six 20 MB mails sent at once over real SMTP used to take the process from
under 100 MiB to over 400 MiB, and it stayed there. DATA past a threshold is
now spooled to a temporary file, one large message at a time is read back,
summarised and written into SQLite in chunks, so the process's peak resident
size (``VmHWM``) stays under 200 MB, and the memory is given back after.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import pytest

from .helpers import eventually
from .processes import Server, inbox_serve_config

API = "/dev/inbox/api/v1"
SMTP_RE = re.compile(r"Dev inbox SMTP\s+127\.0\.0\.1:(\d+)")
MAILS = 6
MAIL_SIZE = 20 * 1024 * 1024
PEAK_LIMIT = 200 * 1000 * 1000  # bytes


def large_mail(n: int) -> bytes:
    """A 20 MB multipart mail: a short text and a base64 attachment of random bytes."""
    payload = base64.encodebytes(os.urandom(MAIL_SIZE * 3 // 4)).replace(b"\n", b"\r\n")
    head = (
        f"From: App <app@example.test>\r\nTo: susan@example.com\r\nSubject: large {n}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        "--b\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n"
        '--b\r\nContent-Type: application/octet-stream; name="data.bin"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode()
    return head + payload + b"--b--\r\n"


def memory_kib(pid: int, field: str) -> int:
    """``VmHWM`` (peak) or ``VmRSS`` (now) of process ``pid``, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[Server, int]]:
    config = inbox_serve_config(tmp_path, 0)
    srv = Server(config, tmp_path)
    banner = await srv.start()
    match = SMTP_RE.search(banner)
    assert match, banner
    try:
        yield srv, int(match.group(1))
    finally:
        await srv.kill()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
@pytest.mark.timeout(90)
async def test_six_concurrent_20_mb_mails_are_stored_whole_in_bounded_memory(
    server: tuple[Server, int],
) -> None:
    srv, smtp_port = server
    assert srv.proc is not None
    pid = srv.proc.pid
    idle = memory_kib(pid, "VmRSS") * 1024
    mails = [large_mail(n) for n in range(MAILS)]
    digests = {f"large {n}": hashlib.sha256(m).hexdigest() for n, m in enumerate(mails)}

    async def send(raw: bytes) -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_port, timeout=60) as smtp:
            await smtp.sendmail("app@example.test", ["susan@example.com"], raw)

    started = asyncio.get_running_loop().time()
    await asyncio.gather(*(send(m) for m in mails))
    elapsed = asyncio.get_running_loop().time() - started
    del mails

    async with aiohttp.ClientSession(srv.base_url) as http:

        async def all_stored() -> dict[str, Any] | None:
            async with http.get(f"{API}/messages") as resp:
                listing: dict[str, Any] = await resp.json()
            return listing if listing["total"] == MAILS else None

        listing = await eventually(all_stored)
        peak = memory_kib(pid, "VmHWM") * 1024
        settled = memory_kib(pid, "VmRSS") * 1024
        for item in listing["messages"]:
            async with http.get(f"{API}/message/{item['ID']}/raw") as resp:
                raw = await resp.read()
            assert hashlib.sha256(raw).hexdigest() == digests[item["Subject"]], item["Subject"]
    figures = (
        f"RSS {idle / 1e6:.0f} MB idle, peak {peak / 1e6:.0f} MB, then {settled / 1e6:.0f} MB;"
        f" sent in {elapsed:.1f} s"
    )
    assert peak < PEAK_LIMIT, figures
    # Given back after: less than three of the mails' worth stays with the process.
    assert settled < idle + 3 * MAIL_SIZE, figures
