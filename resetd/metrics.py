"""The instruments behind ``GET /metrics`` (served by :mod:`resetd.health`).

Counters and the delivery histogram are this process's (each instance is
scraped on its own and the sums are Prometheus' job); the outbox gauges are
the database's, set at each scrape, so every instance sharing it reports the
same backlog. The parts that count get a :class:`Metrics` in their
constructor; nothing here knows the app.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

RESET_OUTCOMES = ("mail_queued", "unknown_address", "ambiguous_address", "rate_limited", "failed")
LIMITS = ("reset_ip", "reset_address", "sign_in")
SIGN_IN_OUTCOMES = ("success", "failed", "refused")
REPLY_CLASSES = ("2xx", "4xx", "5xx", "none")  # none: no reply (connection, timeout)
# Seconds from a mail's queueing to the relay's acceptance.
DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400)


class Metrics:
    """The instruments, in a registry of the app's own (several apps, as in the
    tests, never share one)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.reset_requests = Counter(
            "resetd_reset_requests",
            "Reset requests processed by this instance, by outcome",
            ["outcome"],
            registry=r,
        )
        self.rate_limited = Counter(
            "resetd_rate_limited_requests",
            "Requests refused or not mailed because a rate limit was full, by limit",
            ["limit"],
            registry=r,
        )
        self.sign_ins = Counter(
            "resetd_sign_ins", "Sign-in attempts, by outcome", ["outcome"], registry=r
        )
        self.smtp_replies = Counter(
            "resetd_outbox_smtp_replies",
            "Delivery attempts by the class of the relay's reply (none: no reply)",
            ["class"],
            registry=r,
        )
        self.delivery_seconds = Histogram(
            "resetd_outbox_delivery_seconds",
            "Seconds from a mail's queueing to the relay's acceptance",
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.outbox_mails = Gauge(
            "resetd_outbox_mails", "Mails in the outbox, by status", ["status"], registry=r
        )
        self.outbox_oldest = Gauge(
            "resetd_outbox_oldest_pending_seconds",
            "Age of the oldest pending mail (0 when none is pending)",
            registry=r,
        )
        self.hashing_waiting = Gauge(
            "resetd_hashing_queue_waiting", "Password hashes waiting for a thread", registry=r
        )
        self.hashing_running = Gauge(
            "resetd_hashing_running", "Password hashes running in a thread", registry=r
        )
        # Every series from the first scrape on, so a rate() never starts mid-way.
        # The children are kept: labels() takes a lock and rebuilds the key each
        # time (2-3 µs), and the processor counts every request it processes.
        self._outcomes = {o: self.reset_requests.labels(o) for o in RESET_OUTCOMES}
        for limit in LIMITS:
            self.rate_limited.labels(limit)
        self._address_limited = self.rate_limited.labels("reset_address")
        for outcome in SIGN_IN_OUTCOMES:
            self.sign_ins.labels(outcome)
        self._replies = {cls: self.smtp_replies.labels(cls) for cls in REPLY_CLASSES}

    def reset_outcomes(self, outcomes: list[str]) -> None:
        """Count processed requests by their audit outcome (its first word)."""
        counts: dict[str, int] = {}
        for outcome in outcomes:
            kind = outcome.partition(" ")[0]
            kind = kind if kind in self._outcomes else "failed"
            counts[kind] = counts.get(kind, 0) + 1
        for kind, n in counts.items():
            self._outcomes[kind].inc(n)
            if kind == "rate_limited":
                self._address_limited.inc(n)

    def reply(self, text: str | None) -> None:
        """Count one delivery attempt by its reply: None is a 250, a text is the
        error (``451 …``, or no code at all when no reply came)."""
        if text is None:
            self._replies["2xx"].inc()
        elif text[:1] in ("4", "5") and text[1:3].isdigit():
            self._replies[f"{text[0]}xx"].inc()
        else:
            self._replies["none"].inc()

    def delivered(self, created_at: float) -> None:
        self.delivery_seconds.observe(max(0.0, time.time() - created_at))
