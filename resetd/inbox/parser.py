"""Digesting captured mail without ever holding up the event loop.

A small well-formed mail is digested on the loop (:func:`~.digest.quick_digest`,
linear and bounded). Anything else goes to a child process running
:mod:`.parser_child`: the stdlib parser is Python code that can take
quadratic time or recurse without bound on hostile input, and in a thread it
would still hold the GIL against the loop (a regex match never lets go of
it). In a process it only uses a core; each job has ``[dev_inbox]
parse_timeout`` seconds, after which the child is killed and the mail is
stored as received with that problem shown. The next job starts a new child.

The child starts on the first job that needs it, so an inbox that only sees
well-formed mail never starts one. Jobs run one at a time, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import sys
from pathlib import Path
from typing import Any

from .digest import Digest, quick_digest, unparsed_digest
from .parser_child import HEADER

log = logging.getLogger(__name__)

# The child loads the parsing modules alone: importing the package runs its
# __init__, which brings in aiohttp and every page (0.4 s and 40 MB). A bare
# module standing in for the package lets its submodules import by themselves.
_BOOT = """
import sys, types
sys.path.insert(0, sys.argv[1])
package = types.ModuleType("resetd.inbox")
package.__path__ = [sys.argv[2]]
sys.modules["resetd.inbox"] = package
from resetd.inbox.parser_child import main
main()
"""
_HERE = Path(__file__).resolve().parent
STOP_GRACE = 2.0  # seconds the child gets to exit after its stdin closes


class ParserFailed(Exception):
    """The parser process gave no answer for a job (time limit, crash, shutdown)."""


class ParserProcess:
    """One child process for the heavy parsing, started when first needed."""

    def __init__(self, time_limit: float) -> None:
        self.time_limit = time_limit
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    async def digest(self, raw: bytes, rcpt_tos: list[str]) -> Digest:
        """The digest of ``raw``; never raises for its content.

        A mail the parser process gives up on is stored as received, with why.
        """
        quick = quick_digest(raw, rcpt_tos)
        if quick is not None:
            return quick
        return await self.full_digest(raw, rcpt_tos)

    async def full_digest(self, raw: bytes, rcpt_tos: list[str]) -> Digest:
        """The digest of ``raw`` from the parser process, for a mail
        :func:`~.digest.quick_digest` did not take; never raises for its content."""
        try:
            digest: Digest = await self.run("digest", raw, rcpt_tos)
        except ParserFailed as exc:
            return unparsed_digest(raw, rcpt_tos, str(exc))
        return digest

    async def part(self, raw: bytes, part_id: str) -> tuple[str, str, bytes] | None:
        """Content type, file name and decoded bytes of one part, or None (no such part)."""
        found: tuple[str, str, bytes] | None = await self.run("part", raw, part_id)
        return found

    async def run(self, kind: str, *args: Any) -> Any:
        """Run one job in the child; raises ParserFailed when it gives no answer in time."""
        async with self._lock:
            if self._closed:
                raise ParserFailed("not parsed: the inbox is shutting down")
            proc = await self._started()
            assert proc.stdin is not None and proc.stdout is not None
            frame = pickle.dumps((kind, args), protocol=pickle.HIGHEST_PROTOCOL)
            try:
                async with asyncio.timeout(self.time_limit):
                    proc.stdin.write(HEADER.pack(len(frame)))
                    proc.stdin.write(frame)
                    await proc.stdin.drain()
                    (size,) = HEADER.unpack(await proc.stdout.readexactly(HEADER.size))
                    reply = await proc.stdout.readexactly(size)
            except TimeoutError:
                await self._kill()
                raise ParserFailed(
                    f"not parsed: parsing took longer than {self.time_limit:g} s"
                ) from None
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                await self._kill()
                log.warning("dev inbox: the parser process ended during a job (%s)", exc)
                raise ParserFailed("not parsed: the parser process ended") from None
            except BaseException:
                # Cancelled mid-job: the child's answer would be read by the next job.
                await asyncio.shield(self._kill())
                raise
        status, value = pickle.loads(reply)  # noqa: S301 (our own child's answer)
        if status != "ok":
            raise ParserFailed(f"not parsed: {value}")
        return value

    async def _started(self) -> asyncio.subprocess.Process:
        if self._proc is not None and self._proc.returncode is None:
            return self._proc
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _BOOT,
            str(_HERE.parent.parent),
            str(_HERE),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return self._proc

    async def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()

    async def close(self) -> None:
        """Stop the child: stdin closed, then killed if it has not exited within STOP_GRACE."""
        self._closed = True
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
