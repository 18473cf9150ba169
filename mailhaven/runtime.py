"""How a serving process runs: its event loop and its file descriptor limit.

* The event loop is uvloop's when uvloop is installed (``pip install mailhaven[fast]``)
  and ``[server] event_loop`` is ``auto`` (the default) or ``uvloop``, and no implicit
  TLS listener is configured (see :func:`loop_factory`); asyncio's own otherwise.
  uvloop implements the same asyncio API (transports, ``start_tls``, signals) in C on
  libuv: each wake-up, timer and socket write costs less, which is what 10,000 idling
  connections woken by one APPEND pay for 10,000 times.
* Every connection holds a file descriptor.  Linux starts processes with a soft limit
  of 1,024; a server configured for more connections raises its soft limit to the
  hard one at start, and says so when even that is below what it was configured for.
* The event loop shares the interpreter lock with the storage's reader and writer
  threads.  Every SQLite call and socket write releases it, and getting it back waits
  until the thread holding it is asked to give it up: after Python's default switch
  interval of 5 ms.  Under a mixed load the loop thread waited that long after many
  of its small reads; a serving process uses 1 ms (GIL_SWITCH_SECONDS).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import resource
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from mailhaven.config import ConfigError

T = TypeVar("T")

log = logging.getLogger(__name__)

EVENT_LOOPS = ("auto", "asyncio", "uvloop")
# Measured with the mixed load (docs/performance.md, fifth round): 1 ms beat 5 ms in six
# alternated runs out of six (throughput +4-13%, p99 -10-17%); 0.2 ms was worse than both.
GIL_SWITCH_SECONDS = 0.001
# Descriptors besides connections: the store (database, WAL, shared memory and one
# connection per reader thread), listeners, the supervisor link, logs, TLS files.
RESERVED_DESCRIPTORS = 64


def loop_factory(
    choice: str, *, implicit_tls: bool = False
) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop constructor for ``[server] event_loop`` (None: asyncio's).

    An implicit-TLS listener keeps each new connection unread until it has peeked at
    the ClientHello (``server._HeldConnection``): uvloop starts reading right after
    ``connection_made`` even when the protocol paused reading there, so the ClientHello
    would be consumed.  With one configured, ``auto`` stays on asyncio and ``uvloop``
    is refused."""
    if choice == "asyncio" or (choice == "auto" and (implicit_tls or not uvloop_available())):
        return None
    if implicit_tls:
        raise ConfigError(
            'server.event_loop: "uvloop" cannot serve implicit TLS (imaps.listen); use "auto"'
        )
    import uvloop  # a missing uvloop with event_loop = "uvloop" fails here, at start

    return uvloop.new_event_loop


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def run(main: Coroutine[Any, Any, T], event_loop: str = "auto", *, implicit_tls: bool = False) -> T:
    """``asyncio.run`` on the chosen event loop (see :func:`loop_factory`)."""
    try:
        factory = loop_factory(event_loop, implicit_tls=implicit_tls)
    except ConfigError:
        main.close()  # never awaited
        raise
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def loop_name() -> str:
    """The running loop's kind, for the start-up log line."""
    loop_class = type(asyncio.get_running_loop())
    return "uvloop" if loop_class.__module__.startswith("uvloop") else "asyncio"


def raise_file_limit(max_connections: int) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in
    force.  Logs a warning when it leaves too few descriptors for *max_connections*."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # RLIM_INFINITY is -1 here: never below a number.  The kernel refuses an
    # unlimited RLIMIT_NOFILE anyway, so a finite hard limit is the usual case.
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > soft):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as error:
            log.warning("could not raise the file descriptor limit error=%r", str(error))
    needed = max_connections + RESERVED_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "file descriptor limit %d is below limits.max_connections %d plus %d;"
            " connections past it will be refused (raise the hard limit: ulimit -Hn,"
            " LimitNOFILE= in a systemd unit)",
            soft,
            max_connections,
            RESERVED_DESCRIPTORS,
        )
    return soft
