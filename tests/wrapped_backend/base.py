"""A database backend that wraps Django's PostgreSQL one, as instrumentation packages do: ``djtasks.E003``
must accept it (its vendor is ``postgresql`` although its ENGINE path is not Django's)."""

from __future__ import annotations

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    pass
