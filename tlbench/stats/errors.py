"""The one error of ``tlbench.stats``: input a statistic cannot be computed from."""

from __future__ import annotations

from tlbench.errors import TlbenchError


class StatsError(TlbenchError, ValueError):
    """The frame cannot answer the question asked (a missing column, one value where two are needed).

    A ``ValueError`` too, so callers that guard numeric code with ``except ValueError`` still catch it.
    """
