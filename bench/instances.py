"""``python -m bench.instances [--quick]`` — several ``resetd serve`` instances on
one database, beside a single instance in the same run (figure 7).

Two runs, each with N known users who each ask once for a reset, the requests
spread round-robin over the instances as a load balancer would:

- **split**: one instance, then three on the same database: requests/s, mails/s
  end to end, CPU per mail of each resetd process; lost and duplicated mails.
- **kill**: three instances; when about a third of the mail is delivered one of
  them gets SIGKILL. A request it can no longer answer goes to the next
  instance, as a load balancer's retry would. Every request answered 303 must
  be mailed: lost and duplicated mails are counted, and the time from the kill
  until the last mail is delivered is the survivors' take-over.

Today the database is one SQLite file shared by the processes on this machine
(claims carry their owner and a lease, see the README's outbox section).
Binds only 127.0.0.1, stops every process it starts, and is bounded in time
(about 1 minute with --quick, 3 in full). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from resetd.config import PasswordConfig
from resetd.passwords import Hasher

from .__main__ import _post, _sink_stats
from .procs import (
    ROOT,
    cpu_seconds,
    free_port,
    init_db,
    process,
    resetd_cmd,
    seed_users,
    write_config,
)

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
DEADLINE = 120.0  # seconds one run may take before it gives up waiting for mail
QUIET = 20.0  # once every request is answered: no new mail for this long ends the wait


@dataclass
class Outcome:
    instances: int
    answered: int  # requests that got their 303
    delivered: int
    duplicates: int
    seconds: float  # first request to last mail
    req_seconds: float  # first request to last 303
    cpu_ms_per_mail: list[float]
    takeover: float | None = None  # kill to last mail (kill run only)
    refused: dict[int, int] | None = None  # answers other than 303, by status

    @property
    def lost(self) -> int:
        return max(0, self.answered - (self.delivered - self.duplicates))


class Balancer:
    """Round-robin over the instances; a refused connection moves to the next one."""

    def __init__(self, bases: list[str]) -> None:
        self.bases = bases
        self.alive = [True] * len(bases)
        self.next = 0
        self.tokens: dict[int, str] = {}
        self.refusals: dict[int, int] = {}  # status → how many (not 303)

    def pick(self) -> int:
        for _ in self.bases:
            i = self.next % len(self.bases)
            self.next += 1
            if self.alive[i]:
                return i
        raise RuntimeError("no instance left")

    async def csrf(self, s: aiohttp.ClientSession, i: int) -> str:
        """One session and its CSRF token for every instance, as a browser behind a
        load balancer has (one origin, one cookie); any instance reads it, since
        they share the secret key."""
        if not self.tokens:
            async with s.get(f"{self.bases[i]}/reset_password_request") as r:
                found = CSRF.search(await r.text())
                assert found, r.status
                self.tokens[0] = found.group(1)
        return self.tokens[0]

    async def request(self, s: aiohttp.ClientSession, email: str) -> bool:
        for _attempt in range(len(self.bases) * 2):
            i = self.pick()
            try:
                token = await self.csrf(s, i)
                async with s.post(
                    f"{self.bases[i]}/reset_password_request",
                    data={"csrf_token": token, "email": email},
                    allow_redirects=False,
                ) as resp:
                    if resp.status == 303:
                        return True
                    self.refusals[resp.status] = self.refusals.get(resp.status, 0) + 1
            except (aiohttp.ClientConnectionError, TimeoutError):
                self.alive[i] = False  # as a load balancer's health check would
        return False


async def _load(bal: Balancer, count: int, concurrency: int) -> tuple[int, float]:
    """Each of ``count`` users asks once; returns (answered 303, seconds)."""
    answered = 0
    todo = iter(range(count))
    # unsafe=True keeps the session cookies of IP-address hosts; the instances
    # share the secret key, so any instance's cookie and CSRF token work on all.
    jar = aiohttp.CookieJar(unsafe=True)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=timeout) as s:

        async def worker() -> None:
            nonlocal answered
            for i in todo:
                if await bal.request(s, f"user{i}@example.com"):
                    answered += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return answered, time.perf_counter() - started


def run_once(work: Path, instances: int, count: int, kill: bool = False) -> Outcome:
    work.mkdir(parents=True)
    db = work / "resetd.db"
    sink_smtp, sink_http = free_port(), free_port()
    ports = [free_port() for _ in range(instances)]
    configs = []
    for n, port in enumerate(ports):
        d = work / f"i{n}"
        d.mkdir()
        cfg = write_config(d, port, sink_smtp, inbox=False)
        cfg.write_text(cfg.read_text().replace(str(d / "resetd.db"), str(db)))
        configs.append(cfg)
    init_db(configs[0], work)
    seed_users(db, count, Hasher(PasswordConfig()).hash_sync("bench pw 12345"))
    with ExitStack() as stack:
        stack.enter_context(
            process(
                [sys.executable, "-m", "bench.sink", str(sink_smtp), str(sink_http)],
                sink_http,
                cwd=ROOT,
            )
        )
        procs: list[subprocess.Popen[bytes]] = [
            stack.enter_context(
                process(
                    resetd_cmd(cfg),
                    port,
                    env={"RESETD_LOG_LEVEL": "WARNING"},
                    cwd=cfg.parent,
                    log=cfg.parent / "serve.log",
                )
            )
            for cfg, port in zip(configs, ports, strict=True)
        ]
        cpu_before = [cpu_seconds(p.pid) for p in procs]
        bal = Balancer([f"http://127.0.0.1:{p}" for p in ports])
        killed_at: float | None = None
        last_change = time.perf_counter()
        seen = 0

        async def drive() -> tuple[int, float]:
            nonlocal killed_at, last_change, seen
            load = asyncio.create_task(_load(bal, count, 32))
            while True:
                got = await _sink_stats(sink_http)
                now = time.perf_counter()
                if got["count"] != seen:
                    seen, last_change = got["count"], now
                if kill and killed_at is None and got["count"] >= count // 3:
                    procs[-1].send_signal(signal.SIGKILL)
                    killed_at = now
                if load.done() and (got["count"] >= load.result()[0] or now - last_change > QUIET):
                    return load.result()
                if now - started > DEADLINE:
                    return await load if load.done() else (0, now - started)
                await asyncio.sleep(0.02)

        started = time.perf_counter()
        answered, req_seconds = asyncio.run(drive())
        # Late copies (a dead instance's mail sent again) would show up after this:
        time.sleep(1.0 if not kill else 8.0)
        got = asyncio.run(_sink_stats(sink_http))
        cpu = [
            (cpu_seconds(p.pid) - b) for p, b in zip(procs, cpu_before, strict=True)
            if p.poll() is None
        ]  # fmt: skip
        asyncio.run(_post(f"http://127.0.0.1:{sink_http}/reset"))
    delivered = int(got["count"])
    return Outcome(
        instances=instances,
        answered=answered,
        delivered=delivered,
        duplicates=int(got["duplicates"]),
        seconds=last_change - started,
        req_seconds=req_seconds,
        cpu_ms_per_mail=[c / max(1, delivered) * 1000 for c in cpu],
        takeover=None if killed_at is None else max(0.0, last_change - killed_at),
        refused=bal.refusals,
    )


def show(label: str, o: Outcome) -> None:
    cpu = " + ".join(f"{c:.2f}" for c in o.cpu_ms_per_mail)
    print(
        f"{label:<28} {o.answered:>5} answered  {o.answered / o.req_seconds:>6.0f} req/s  "
        f"{o.delivered - o.duplicates:>5} mailed  {(o.delivered - o.duplicates) / o.seconds:>6.0f}"
        f" mails/s  lost {o.lost}  duplicates {o.duplicates}  CPU/mail {cpu} ms"
        + ("" if o.takeover is None else f"  take-over {o.takeover:.1f} s")
        + (f"  refused {o.refused}" if o.refused else ""),
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.instances", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer users (about 1 minute)")
    args = p.parse_args()
    count = 600 if args.quick else 2000
    print(f"figure 7: {count} users, one reset request each, on one SQLite file", flush=True)
    with tempfile.TemporaryDirectory(prefix="resetd-bench-") as tmp:
        work = Path(tmp)
        show("1 instance", run_once(work / "one", 1, count))
        show("3 instances, load split", run_once(work / "three", 3, count))
        show("3 instances, one killed", run_once(work / "kill", 3, count, kill=True))


if __name__ == "__main__":
    main()
