"""Running an application with uvicorn on a socket that is already listening.

One ``SIGTERM`` (or ``Ctrl+C``) ends the process within seconds, even while a long explanation
runs: the signal first calls ``on_stop`` (the server's :meth:`~.viewer.jobs.JobBoard.stop_all`,
so every running job stops at its next check and its request is answered 503), then uvicorn
stops listening and gives the requests in flight :data:`GRACE_SECONDS` to finish before it
cancels them. Without ``on_stop`` the work on the worker threads went on after uvicorn stopped,
and the process only ended when it was done, or at a second signal.

Where a thread cannot be interrupted (one model pass, a download), the process waits for it:
for a pass, a fraction of a second; for a download, at most the fetch deadline.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from types import FrameType
from typing import Any

#: Seconds uvicorn waits for requests in flight after a stop signal before cancelling them.
GRACE_SECONDS = 3


def serve(app: Any, sock: socket.socket, on_stop: Callable[[], None]) -> None:
    """Serve ``app`` on ``sock`` until a stop signal; ``on_stop`` runs at the first one."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            on_stop()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_graceful_shutdown=GRACE_SECONDS
    )
    Server(config).run(sockets=[sock])
