"""The base of tlbench's own errors, importable without torch.

Every error that explains a user's mistake (a grid key, a dataset that is not on disk, a weight
file that does not fit, an unknown name) subclasses ``TlbenchError``, so a caller can tell "the
input is wrong, print the message" from "tlbench has a bug, show the traceback" with one
``except``. Each keeps its builtin base too (``ValueError``, ``KeyError``, ``FileNotFoundError``),
so ``except`` clauses written against those still catch it.
"""

from __future__ import annotations


class TlbenchError(Exception):
    """An error whose message is meant for the user: it says what is wrong and how to fix it."""
