"""`seqlstm serve`: a web page to draw a character and watch the model read it, and its JSON API.

FastAPI and uvicorn (the `serve` extra) are imported only when serving, so the rest of seqlstm
works without them.
"""

from __future__ import annotations

import math
import os
import socket
from typing import Callable

from ..errors import ServeError

INSTALL_HINT = 'install them with: pip install "seqlstm[serve]"'


def serve(
    checkpoint: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8000,
    log: Callable[[str], None] | None = None,
    request_timeout: float = 30.0,
    runtime: str = "torch",
) -> None:
    """Serve the drawing page and the JSON API for the model in `checkpoint` until interrupted.

    A client must send each request whole within `request_timeout` seconds, or its connection is closed.
    `runtime` runs the answers without traces (see `create_app`).

    Listens on `host`:`port` (port 0: any free port) and, once connections are accepted, passes
    one line with the page's URL to `log`. Runs until Ctrl+C (SIGINT) or SIGTERM: uvicorn then
    finishes the requests in progress and raises the signal again, so Ctrl+C ends in
    KeyboardInterrupt. Raises ServeError when FastAPI or uvicorn is missing or the address cannot
    be listened on; CheckpointError or ConfigError for a checkpoint it cannot serve.
    """
    if not (isinstance(request_timeout, (int, float)) and math.isfinite(request_timeout) and request_timeout > 0):
        raise ServeError(f"--request-timeout must be a positive number of seconds, got {request_timeout}")
    try:
        import uvicorn

        from .app import create_app
        from .protocol import with_deadline
    except ImportError as e:
        raise ServeError(f"`seqlstm serve` needs FastAPI and uvicorn, and {e.name} is missing; {INSTALL_HINT}") from None
    app = create_app(checkpoint, runtime)
    listener = listen(host, port)
    bound = listener.getsockname()[1]
    url = f"http://[{host}]:{bound}/" if ":" in host else f"http://{host}:{bound}/"
    if log is not None:
        log(f"serving {checkpoint} at {url} (Ctrl+C stops)")
    # Each request must arrive whole within request_timeout (protocol.py); idle keep-alive connections
    # close after uvicorn's own 5 s.
    config = uvicorn.Config(app, log_level="warning", http=with_deadline(request_timeout))
    server = uvicorn.Server(config)
    server.run(sockets=[listener])
    if server.should_exit:
        # uvicorn raises the signal again inside asyncio.run, whose own Ctrl+C handling lets it pass
        # when the serving task has just finished: a stop by signal ends in KeyboardInterrupt either way.
        raise KeyboardInterrupt


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host`:`port` and already listening, so that a client which connects
    as soon as the URL is printed waits in the queue instead of being refused."""
    if not 0 <= port <= 65535:
        raise ServeError(f"port {port} is out of range; use 1-65535, or 0 for any free port")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise ServeError(f"cannot resolve the host {host!r} ({e.strerror}); use an address such as 127.0.0.1") from None
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(128)
    except OSError as e:
        listener.close()
        raise ServeError(
            f"cannot listen on {host}:{port} ({e.strerror}); choose another --port (0 takes any free one) "
            "or stop the program that uses it"
        ) from None
    return listener
