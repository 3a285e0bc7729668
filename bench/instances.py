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

Both runs are made on one SQLite file shared by the processes on this machine
(claims carry their owner and a lease, see the README's outbox section) and on
PostgreSQL (a cluster of its own started here, fsync and synchronous commit
on, as in production; one, two and three instances). For PostgreSQL the CPU
per request and per mail is given for resetd and for the database server.
``--engine`` picks one. Binds only 127.0.0.1 and a Unix socket, stops every
process it starts, and is bounded in time (about 2 minutes with --quick, 6
in full). Prints figures; asserts nothing.
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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
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
    tree_cpu_seconds,
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
    cpu_ms_per_request: list[float] = field(default_factory=list)
    p99_ms: float = 0.0  # a request's answer, from its first try
    db_cpu_ms: tuple[float, float] | None = None  # the database server: per request, per mail

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
        self.latencies: list[float] = []  # seconds, each request answered 303 (retries included)

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
        started = time.perf_counter()
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
                        self.latencies.append(time.perf_counter() - started)
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


@dataclass
class Store:
    """resetd's database for one run: its ``[database]`` lines, how to seed its
    users, and the database server's CPU seconds so far (None for SQLite,
    which runs inside each resetd)."""

    section: str
    seed: Callable[[int, str], None]
    server_cpu: Callable[[], float] | None = None


def sqlite_store(work: Path) -> Store:
    db = work / "resetd.db"
    return Store(f'path = "{db}"', lambda count, pw: seed_users(db, count, pw))


class PostgresCluster:
    """A throwaway PostgreSQL cluster with fsync on, and a database per run."""

    def __init__(self) -> None:
        from tests import pg_cluster

        self.pg = pg_cluster
        reason = pg_cluster.unavailable()
        if reason is not None:
            raise RuntimeError(f"PostgreSQL: {reason}")
        self.directory = pg_cluster.make_directory()
        self.url = pg_cluster.start(self.directory, durable=True)
        self.runs = 0

    def close(self) -> None:
        self.pg.stop(self.directory)

    def store(self, pool_size: int) -> Store:
        import psycopg

        self.runs += 1
        name = f"bench{self.runs}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
        url = self.pg.url_for(self.directory, name)
        postmaster = self.pg.postmaster_pid(self.directory)

        def seed(count: int, password_hash: str) -> None:
            now = time.time()
            with psycopg.connect(url) as conn, conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO users (username, username_norm, email, email_norm,"
                    " password_hash, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [
                        (f"user{i}", f"user{i}", f"user{i}@example.com", f"user{i}@example.com",
                         password_hash, now, now)
                        for i in range(count)
                    ],
                )  # fmt: skip

        # The postmaster's own time, its ended backends' (it reaps them) and the
        # running ones': every server process's CPU.
        return Store(
            f'url = "{url}"\npool_size = {pool_size}', seed, lambda: tree_cpu_seconds(postmaster)
        )


@contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        yield cluster
    finally:
        cluster.close()


def run_once(
    work: Path, instances: int, count: int, kill: bool = False, store: Store | None = None
) -> Outcome:
    work.mkdir(parents=True)
    store = store or sqlite_store(work)
    sink_smtp, sink_http = free_port(), free_port()
    ports = [free_port() for _ in range(instances)]
    configs = []
    for n, port in enumerate(ports):
        d = work / f"i{n}"
        d.mkdir()
        cfg = write_config(d, port, sink_smtp, inbox=False)
        cfg.write_text(cfg.read_text().replace(f'path = "{d / "resetd.db"}"', store.section))
        configs.append(cfg)
    init_db(configs[0], work)
    store.seed(count, Hasher(PasswordConfig()).hash_sync("bench pw 12345"))
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
        db_before = store.server_cpu() if store.server_cpu else 0.0
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
        db_cpu = store.server_cpu() - db_before if store.server_cpu else None
        asyncio.run(_post(f"http://127.0.0.1:{sink_http}/reset"))
    delivered = int(got["count"])
    mailed = max(1, delivered - int(got["duplicates"]))
    return Outcome(
        instances=instances,
        answered=answered,
        delivered=delivered,
        duplicates=int(got["duplicates"]),
        seconds=last_change - started,
        req_seconds=req_seconds,
        cpu_ms_per_mail=[c / mailed * 1000 for c in cpu],
        takeover=None if killed_at is None else max(0.0, last_change - killed_at),
        refused=bal.refusals,
        cpu_ms_per_request=[c / max(1, answered) * 1000 for c in cpu],
        p99_ms=_p99(bal.latencies) * 1000,
        db_cpu_ms=None
        if db_cpu is None
        else (db_cpu / max(1, answered) * 1000, db_cpu / mailed * 1000),
    )


def _p99(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def show(label: str, o: Outcome) -> None:
    cpu = " + ".join(f"{c:.2f}" for c in o.cpu_ms_per_mail)
    per_request = " + ".join(f"{c:.2f}" for c in o.cpu_ms_per_request)
    db = "" if o.db_cpu_ms is None else (
        f"  postgres CPU/request {o.db_cpu_ms[0]:.2f} ms, CPU/mail {o.db_cpu_ms[1]:.2f} ms"
    )  # fmt: skip
    print(
        f"{label:<34} {o.answered:>5} answered  {o.answered / o.req_seconds:>6.0f} req/s  "
        f"p99 {o.p99_ms:>5.0f} ms  "
        f"{o.delivered - o.duplicates:>5} mailed  {(o.delivered - o.duplicates) / o.seconds:>6.0f}"
        f" mails/s  lost {o.lost}  duplicates {o.duplicates}  resetd CPU/request {per_request}"
        f" ms, CPU/mail {cpu} ms{db}"
        + ("" if o.takeover is None else f"  take-over {o.takeover:.1f} s")
        + (f"  refused {o.refused}" if o.refused else ""),
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.instances", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer users (about 2 minutes)")
    p.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--pool-size", type=int, default=10, help="[database] pool_size on PostgreSQL")
    args = p.parse_args()
    count = 600 if args.quick else 2000
    print(f"figure 7: {count} users, one reset request each", flush=True)
    with tempfile.TemporaryDirectory(prefix="resetd-bench-") as tmp:
        work = Path(tmp)
        if args.engine in ("sqlite", "both"):
            show("SQLite, 1 instance", run_once(work / "one", 1, count))
            show("SQLite, 3 instances, load split", run_once(work / "three", 3, count))
            show("SQLite, 3 instances, one killed", run_once(work / "kill", 3, count, kill=True))
        if args.engine in ("postgresql", "both"):
            with postgres_cluster() as pg:
                for n in (1, 2, 3):
                    store = pg.store(args.pool_size)
                    label = f"PostgreSQL, {n} instance{'s' if n > 1 else ''}"
                    show(label, run_once(work / f"pg{n}", n, count, store=store))
                store = pg.store(args.pool_size)
                label = "PostgreSQL, 3, one killed"
                show(label, run_once(work / "pgkill", 3, count, kill=True, store=store))


if __name__ == "__main__":
    main()
