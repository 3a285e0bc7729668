"""``resetd serve`` as a user runs it: the banner, the pages, the inbox, Ctrl+C."""

from __future__ import annotations

import re
import signal
import smtplib
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .relays import free_port


def test_serve_prints_its_urls_serves_the_inbox_logs_a_line_per_mail_and_stops_on_sigint(
    tmp_path: Path,
) -> None:
    http_port, smtp_port = free_port(), free_port()
    cfg = tmp_path / "resetd.toml"
    cfg.write_text(
        f'[server]\nport = {http_port}\nsecret_key = "{"k" * 32}"\n'
        f'[database]\npath = "{tmp_path / "r.db"}"\n'
        f'[mail]\nserver = "127.0.0.1"\nport = {smtp_port}\n'
        f'[dev_inbox]\nenabled = true\nsmtp_port = {smtp_port}\npath = "{tmp_path / "i.db"}"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "resetd", "serve", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        banner = ""
        deadline = time.monotonic() + 30
        while "Ctrl+C" not in banner and time.monotonic() < deadline:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line and proc.poll() is not None:
                break
            banner += line
        assert f"http://127.0.0.1:{http_port}/login" in banner
        assert f"http://127.0.0.1:{http_port}/dev/inbox" in banner
        assert f"127.0.0.1:{smtp_port}" in banner
        assert re.search(r"Outbox\s+0 pending, 0 failed, 0 sent", banner)
        for path in ("/login", "/reset_password_request", "/dev/inbox"):
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}{path}", timeout=10) as r:
                assert r.status == 200
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            smtp.sendmail("a@example.com", ["b@example.com"], b"Subject: Hello\r\n\r\nbody\r\n")
        time.sleep(0.5)  # stored within the inbox writer's 100 ms
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        log = proc.stdout.read() if proc.stdout else ""
        # One readable line per captured mail; none of aiosmtpd's per-command chatter.
        assert "dev inbox: captured #1 'Hello' from a@example.com to b@example.com" in log
        assert "mail.log" not in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()
