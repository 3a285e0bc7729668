"""Mailpit's own npm client (``mailpit-api``) and nodemailer, run by Node, against ``resetd serve``.

The Node project is tests/node (package.json + package-lock.json; ``.ci/run``
installs it with ``npm ci``). The script calls every client method resetd
implements; the checks that wait on work not on this branch are marked
pending in the script and skipped there, so they are listed, not lost.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.processes import Server, clean_env, inbox_serve_config
from tests.relays import Relay

NODE_DIR = Path(__file__).resolve().parent / "node"
TIMEOUT = 120.0


def _node() -> str:
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed (the Mailpit npm client test needs both)")
    if not (NODE_DIR / "node_modules" / "mailpit-api").is_dir():
        pytest.skip("tests/node has no node_modules: run `npm ci` in tests/node (.ci/run does)")
    return node


async def test_mailpit_api_and_nodemailer_work_against_resetd(tmp_path: Path) -> None:
    node = _node()
    relay = Relay()
    await relay.start()
    config = inbox_serve_config(
        tmp_path, 0, release_allowed=["*@example.com"], release_host="127.0.0.1",
        release_port=relay.port,
    )  # fmt: skip
    server = Server(config, tmp_path)
    await server.start()
    try:
        env = {
            **clean_env(),
            "RESETD_INBOX": f"{server.base_url}/dev/inbox",
            "RESETD_SMTP": str(server.smtp_port),
            "RELEASE_TO": "qa@example.com",
            "RESETD_PENDING": os.environ.get("RESETD_PENDING", ""),
        }
        proc = await asyncio.create_subprocess_exec(
            node, "mailpit_client.mjs", cwd=NODE_DIR, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.communicate()
    finally:
        await server.terminate()
        await relay.stop()
    text = out.decode()
    assert proc.returncode == 0, f"{text}\n{err.decode()}\n{server.logs()}"
    summary = json.loads(text.strip().splitlines()[-1])["summary"]
    ran = [c["name"] for c in summary if c["status"] == "ok"]
    assert len(ran) >= 15, text
    # The release really went out through the second SMTP server.
    assert [r.rcpt_tos for r in relay.received] == [["qa@example.com"]]
