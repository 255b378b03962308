"""Facts about processes on this machine that the local backend relies on: is a lease owner dead, and how a run
is tied to its agent's life.

On one machine a dead process is known at once (its pid is gone or a zombie); across machines only an expired
lease tells, so these answer "dead" only for processes of this host.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def process_gone(host: str | None, pid: int | None) -> bool:
    """Whether ``pid`` on ``host`` is known to be dead: only answerable for processes of this host."""
    if host != socket.gethostname() or pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a killed child not yet reaped by its parent is a zombie: dead, though kill(pid, 0) succeeds
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def owner_is_dead(owner: str | None) -> bool:
    """Whether a lease owner (``host:pid:nonce``) is a process of this host that no longer exists."""
    host, _, rest = (owner or "").partition(":")
    pid = rest.partition(":")[0]
    return pid.isdigit() and process_gone(host, int(pid))


def owner_pid(owner: str | None) -> int | None:
    """The pid of a lease owner (``host:pid:nonce``) if it is a process of this host, else None."""
    host, _, rest = (owner or "").partition(":")
    pid = rest.partition(":")[0]
    return int(pid) if host == socket.gethostname() and pid.isdigit() else None


def wait_for_exit(pid: int, timeout: float) -> None:
    """Sleep until process ``pid`` (of this host, not necessarily our child) exits, at most ``timeout`` s."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfds: poll
        deadline = time.monotonic() + timeout
        while not process_gone(socket.gethostname(), pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def die_with_parent(argv: list[str]) -> tuple[list[str], Callable[[], None] | None]:
    """Make the run die with the agent (kill -9 included): no orphan keeps training unobserved.

    ``setpriv --pdeathsig KILL`` sets Linux's parent-death signal and execs the run: a plain ``vfork``-fast spawn.
    Without setpriv, a ``preexec_fn`` does the same, but forces a full ``fork()`` (~20 ms for a 200 MB agent).
    """
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, "--pdeathsig", "KILL", "--", *argv], None

    def prctl() -> None:  # pragma: no cover - runs in the child between fork and exec
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    return argv, prctl


class _Deferred:
    """Main-thread state of :func:`interrupt_on_signals` and :func:`uninterrupted` (signal handlers run there)."""

    depth = 0  # uninterrupted() sections open
    pending: str | None = None  # the signal that came inside one


@contextlib.contextmanager
def interrupt_on_signals() -> Iterator[list[int]]:
    """SIGTERM, SIGHUP and SIGINT raise KeyboardInterrupt once; later ones are only counted (the yielded list).

    A process driving runs (``launch-sweep --wait``, ``controller``, ``launch-agent``) then leaves its loop through
    its ``finally`` blocks, which stop the runs as W&B's agent does and record how each ended, instead of dying
    with Python's default SIGTERM and leaving them ``running`` in the store. A second signal cannot break that
    shutdown half-way; it is bounded by the stop grace periods. Inside :func:`uninterrupted` the interrupt waits
    for the section's end.
    """
    seen: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        seen.append(signum)
        if len(seen) == 1:
            if _Deferred.depth:
                _Deferred.pending = signal.Signals(signum).name
            else:
                raise KeyboardInterrupt(signal.Signals(signum).name)

    watched = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    previous = {sig: signal.signal(sig, handler) for sig in watched}
    try:
        yield seen
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """A step that a Ctrl-C must not cut in half: a run claimed and started but not yet recorded as ours, a
    standby started but not yet known. The interrupt :func:`interrupt_on_signals` raises comes at its end instead
    (main thread; elsewhere, or outside ``interrupt_on_signals``, this changes nothing)."""
    if threading.current_thread() is not threading.main_thread():  # the handler runs, and raises, in the main one
        yield
        return
    _Deferred.depth += 1
    try:
        yield
    finally:
        _Deferred.depth -= 1
        if _Deferred.depth == 0 and _Deferred.pending is not None:
            name, _Deferred.pending = _Deferred.pending, None
            raise KeyboardInterrupt(name)
