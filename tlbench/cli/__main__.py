"""``python -m tlbench.cli``: what helper processes and tests start."""

from tlbench.cli import entry

if __name__ == "__main__":
    entry()
