"""Step 3: the durable outbox and its delivery to the relay.

:mod:`~resetd.outbox.store` holds the ``outbox`` table; the
:mod:`~resetd.outbox.worker` claims due mail and hands it, through the
:mod:`~resetd.outbox.handoff`, to pooled connections
(:mod:`~resetd.outbox.relay`) that run the SMTP transactions themselves
(:mod:`~resetd.outbox.smtp`). The :mod:`~resetd.outbox.gate` paces new
connections to a relay that refuses them and keeps its
:mod:`~resetd.outbox.status`; :mod:`~resetd.outbox.attempts` records what each
attempt came to, and the :mod:`~resetd.outbox.recorder` marks accepted mail sent.
"""
