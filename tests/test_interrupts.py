"""Signals are held during store writes and delivered right after."""

from __future__ import annotations

import os
import signal

import pytest

from tlbench.interrupts import Terminated, sigterm_as_interrupt, uninterrupted
from tlbench.tracking.client import UninterruptedClient


def test_ctrl_c_inside_the_block_is_delivered_after_it():
    done = []
    with pytest.raises(KeyboardInterrupt), uninterrupted():
        os.kill(os.getpid(), signal.SIGINT)
        done.append("rest of the block")  # not cut short
    assert done == ["rest of the block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_sigterm_becomes_terminated_after_the_block():
    old = signal.getsignal(signal.SIGTERM)
    try:
        sigterm_as_interrupt()
        with pytest.raises(Terminated), uninterrupted():
            os.kill(os.getpid(), signal.SIGTERM)
        assert issubclass(Terminated, KeyboardInterrupt)  # every Ctrl-C path handles it
    finally:
        signal.signal(signal.SIGTERM, old)


def test_the_client_wrapper_finishes_each_call_before_the_interrupt():
    calls = []

    class Store:
        name = "store"

        def write(self, x):
            os.kill(os.getpid(), signal.SIGINT)  # arrives mid-write
            calls.append(x)
            return x * 2

    client = UninterruptedClient(Store())
    assert client.name == "store"
    with pytest.raises(KeyboardInterrupt):
        client.write(21)
    assert calls == [21]
