"""The test-support helpers other tests lean on: processes always stopped, mosquitto started
on new ports when one was taken meanwhile, ports waited for with the program's exit noticed."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest

from qosinspect.testing import mosquitto as mosquitto_module
from qosinspect.testing.mosquitto import Mosquitto
from qosinspect.testing.tools import free_port, stop_process, wait_port

STUBBORN = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n")


def test_stop_process_signals_then_kills_and_closes_the_pipes() -> None:
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                              stdout=subprocess.PIPE)
    assert stop_process(polite) == -signal.SIGTERM
    assert polite.stdout is not None and polite.stdout.closed
    stubborn = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE)
    assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
    t0 = time.monotonic()
    assert stop_process(stubborn, timeout=0.5) == -signal.SIGKILL
    assert time.monotonic() - t0 < 30
    assert stop_process(stubborn) == -signal.SIGKILL          # already ended: no error


def test_wait_port_sees_a_listener_and_a_program_that_exited() -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        wait_port(srv.getsockname()[1], timeout=5)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(10)
    with pytest.raises(RuntimeError, match="exited"):
        wait_port(free_port(), timeout=5, proc=gone)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))                  # bound, not listening: refused
        with pytest.raises(TimeoutError, match="nothing listening"):
            wait_port(closed.getsockname()[1], timeout=0.3)


def test_mosquitto_takes_new_ports_when_one_was_taken_meanwhile(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()                              # another program got there first
        taken = squatter.getsockname()[1]
        picks = iter([taken])
        monkeypatch.setattr(mosquitto_module, "free_port", lambda: next(picks, None) or
                            free_port())
        with Mosquitto().running() as broker:
            assert broker.port != taken
            wait_port(broker.port, timeout=5)
            assert "Address already in use" not in broker.log()
