"""Load generators: wrk (Debian's package) with a Lua script, or an asyncio client."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    tool: str


async def session_for(base: str) -> tuple[str, str]:
    """GET the form once: (cookie header, csrf token) reused by every request."""
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/reset_password_request") as resp:
            text = await resp.text()
            cookie = "; ".join(f"{k}={v.value}" for k, v in resp.cookies.items())
    match = CSRF_RE.search(text)
    return cookie, match.group(1) if match else "x"


# Both scripts POST the reset form with the session's cookie and CSRF token.
_LUA_FORM = """
local csrf = "{csrf}"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Cookie"] = "{cookie}"
local function post(email)
  local body = "csrf_token=" .. csrf .. "&email=" .. email
  return wrk.format(nil, "/reset_password_request", nil, body)
end
"""

LUA = (
    _LUA_FORM
    + """
local known = {known}
local unknown_total = 1000000
local counter = 0
request = function()
  counter = counter + 1
  if counter % 10 == 0 and known > 0 then
    return post("user" .. (counter % known) .. "%40example.com")
  end
  return post("nobody" .. (counter % unknown_total) .. "%40example.com")
end
"""
)


# Figure 2: user0 … user{n-1} once each, in order; the thread stops once all n are
# answered (the few requests already in flight by then ask for unknown addresses).
LUA_EACH_ONCE = (
    _LUA_FORM
    + """
local n = {count}
-- wrk calls request() once while setting up, before any request is sent.
local counter = -2
local answered = 0
response = function(status, headers, body)
  answered = answered + 1
  if answered >= n then
    wrk.thread:stop()
  end
end
request = function()
  counter = counter + 1
  if counter < n then
    return post("user" .. counter .. "%40example.com")
  end
  return post("nobody" .. counter .. "%40example.com")
end
"""
)


def wrk_each_once(base: str, count: int, seconds: float) -> subprocess.Popen[bytes]:
    """Start wrk (one thread, so the order holds) asking a reset for each of ``count``
    users; returns the running process (the caller times the mail, then waits)."""
    cookie, csrf = asyncio.run(session_for(base))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(LUA_EACH_ONCE.format(count=count, csrf=csrf, cookie=cookie.replace('"', '\\"')))
        script = fh.name
    return subprocess.Popen(
        ["wrk", "-t1", "-c64", f"-d{max(1, int(seconds))}s", "-s", script, base],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wrk(
    base: str, cookie: str, csrf: str, known: int, connections: int, seconds: int
) -> LoadResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(LUA.format(known=known, csrf=csrf, cookie=cookie.replace('"', '\\"')))
        script = fh.name
    try:
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script, base],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
        ).stdout
    finally:
        Path(script).unlink(missing_ok=True)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # The latency distribution lines ("     50%   51.67ms"), not the Stdev columns.
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    return LoadResult(rps, p50, p99, total, errors, "wrk")


async def asyncio_load(
    base: str, cookie: str, csrf: str, known: int, connections: int, seconds: int
) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    counter = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors, counter
        while time.perf_counter() < deadline:
            counter += 1
            email = (
                f"user{counter % known}@example.com"
                if known and counter % 10 == 0
                else f"nobody{counter}@example.com"
            )
            started = time.perf_counter()
            async with session.post(
                f"{base}/reset_password_request",
                data={"csrf_token": csrf, "email": email},
                headers={"Cookie": cookie},
                allow_redirects=False,
            ) as resp:
                await resp.read()
                if resp.status >= 400:
                    errors += 1
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as s:
        started = time.perf_counter()
        await asyncio.gather(*(worker(s) for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return LoadResult(
        len(latencies) / elapsed,
        latencies[len(latencies) // 2] * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
        len(latencies),
        errors,
        "asyncio",
    )


def post_load(base: str, known: int, connections: int, seconds: int) -> LoadResult:
    cookie, csrf = asyncio.run(session_for(base))
    if shutil.which("wrk"):
        return wrk(base, cookie, csrf, known, connections, seconds)
    return asyncio.run(asyncio_load(base, cookie, csrf, known, connections, seconds))
