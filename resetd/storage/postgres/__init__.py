"""PostgreSQL, the store several resetd instances share.

:mod:`.engine` holds the connection pool, transactions, the database clock and
LISTEN/NOTIFY; :mod:`.migrations` the tables, at the same schema versions as
SQLite's (:mod:`resetd.schema`). Importing this package needs no driver;
importing those modules needs the ``postgresql`` extra.
"""
