"""tlbench's version, in a module of its own: what a run records (``env.tlbench``) needs no more."""

__version__ = "0.1.0"
