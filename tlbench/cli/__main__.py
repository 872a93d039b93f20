"""``python -m tlbench.cli``: what helper processes and tests start."""

from tlbench.cli import main

main()
