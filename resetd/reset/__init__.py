"""The reset flow, one module per step, read top to bottom.

:mod:`~resetd.reset.request` (step 1: the form) hands each request to the
intake, which queues it in the storage (:mod:`resetd.storage.requests`);
:mod:`~resetd.reset.processor` (step 1½) looks the address up, mints a token
(:mod:`~resetd.reset.tokens`) and composes the mail
(:mod:`~resetd.reset.compose`, step 2) into the outbox (:mod:`resetd.outbox`,
step 3); :mod:`~resetd.reset.confirm` (step 4) turns the mailed link into a new
password.
"""
