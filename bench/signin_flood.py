"""``python -m bench.signin_flood [--attackers 12,40] [--signins 10]`` — how long a
real user's sign-in takes while many clients guess passwords.

Starts resetd on loopback with the default (OWASP) argon2 parameters and
``trusted_proxies = ["127.0.0.1"]``, so each attacking client is an
X-Forwarded-For address of its own. Every attacker first records one failed
sign-in, then keeps guessing (one request at a time, at most ``--guesses``
each) while a real user, from an address in good standing, signs in with the
right password ``--signins`` times, 0.2 s apart. Prints the real user's answers
and latencies and what the attackers got; asserts nothing (the machine is
shared). Bounded: every attacker stops after its guesses or when the real user
is done, and the whole run after 180 s.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

from resetd.config import PasswordConfig
from resetd.passwords import Hasher

from .procs import SECRET, free_port, init_db, process, resetd_cmd, seed_users

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "a real user's long passphrase"
REAL_IP = "192.0.2.77"


def write_config(workdir: Path, http_port: int) -> Path:
    cfg = workdir / "resetd.toml"
    cfg.write_text(
        f"""
[server]
host = "127.0.0.1"
port = {http_port}
public_url = "http://localhost:{http_port}"
secret_key = "{SECRET}"
trusted_proxies = ["127.0.0.1"]
[database]
path = "{workdir / "resetd.db"}"
[mail]
server = "127.0.0.1"
port = {free_port()}
[dev_inbox]
enabled = false
"""
    )
    return cfg


async def _session(base: str) -> tuple[aiohttp.ClientSession, str]:
    s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with s.get(f"{base}/login") as resp:
        match = CSRF_RE.search(await resp.text())
    assert match, "no CSRF token on /login"
    return s, match.group(1)


async def _login(
    s: aiohttp.ClientSession, base: str, csrf: str, user: str, password: str, ip: str
) -> tuple[int, float]:
    data = {"csrf_token": csrf, "username": user, "password": password}
    started = time.perf_counter()
    async with s.post(
        f"{base}/login", data=data, headers={"X-Forwarded-For": ip}, allow_redirects=False
    ) as resp:
        await resp.read()
        return resp.status, time.perf_counter() - started


async def _flood(base: str, attackers: int, signins: int, guesses: int) -> None:
    stop = asyncio.Event()
    got: Counter[int] = Counter()

    async def attacker(n: int) -> None:
        ip = f"203.0.113.{n + 1}" if n < 250 else f"198.18.{n // 250}.{n % 250 + 1}"
        s, csrf = await _session(base)
        try:
            status, _ = await _login(s, base, csrf, f"guess{n}-0", "wrong", ip)
            got[status] += 1
            recorded.append(n)
            if len(recorded) == attackers:
                ready.set()
            for i in range(1, guesses):
                if stop.is_set():
                    break
                status, _ = await _login(s, base, csrf, f"guess{n}-{i}", "wrong", ip)
                got[status] += 1
        finally:
            await s.close()

    async def real_user() -> list[tuple[int, float]]:
        await ready.wait()
        await asyncio.sleep(1.0)  # the flood in full swing
        seen = []
        for _ in range(signins):
            s, csrf = await _session(base)
            try:
                seen.append(await _login(s, base, csrf, "user0", PASSWORD, REAL_IP))
            finally:
                await s.close()
            await asyncio.sleep(0.2)
        stop.set()
        return seen

    recorded: list[int] = []
    ready = asyncio.Event()  # every attacker has a failure on record
    tasks = [asyncio.create_task(attacker(n)) for n in range(attackers)]
    try:
        seen = await real_user()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    times = [t * 1000 for _, t in seen]
    statuses = Counter(st for st, _ in seen)
    print(
        f"{attackers:>3} attacking clients: real user {dict(statuses)}, "
        f"median {statistics.median(times):.0f} ms, max {max(times):.0f} ms "
        f"({', '.join(f'{t:.0f}' for t in times)}); attackers got {dict(sorted(got.items()))}"
    )


async def _quiet(base: str, signins: int) -> None:
    times = []
    for _ in range(signins):
        s, csrf = await _session(base)
        try:
            status, took = await _login(s, base, csrf, "user0", PASSWORD, REAL_IP)
        finally:
            await s.close()
        assert status == 303, status
        times.append(took * 1000)
    print(f"  no attack: real user median {statistics.median(times):.0f} ms, max {max(times):.0f}")


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.signin_flood", description=__doc__)
    p.add_argument("--attackers", default="12,40", help="comma-separated attacker counts")
    p.add_argument("--signins", type=int, default=10, help="real sign-ins per flood")
    p.add_argument("--guesses", type=int, default=1000, help="guesses per attacker at most")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="resetd-flood-") as tmp:
        work = Path(tmp)
        for i, n in enumerate(int(a) for a in args.attackers.split(",")):
            d = work / f"flood{i}-{n}"
            d.mkdir()
            port = free_port()
            cfg = write_config(d, port)
            init_db(cfg, d)
            seed_users(d / "resetd.db", 1, Hasher(PasswordConfig()).hash_sync(PASSWORD))
            with process(resetd_cmd(cfg), port, cwd=d, log=d / "server.log"):
                base = f"http://127.0.0.1:{port}"
                asyncio.run(asyncio.wait_for(_quiet(base, 3), 60))
                asyncio.run(asyncio.wait_for(_flood(base, n, args.signins, args.guesses), 180))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
