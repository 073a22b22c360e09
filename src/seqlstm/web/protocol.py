"""uvicorn's h11 protocol with a deadline for receiving each request, head and body.

uvicorn times out only idle keep-alive connections, and resets that clock on every byte, so a client
that trickles a request (slowloris), or sends a body shorter than its Content-Length, holds its
connection for as long as it likes. Here every request must arrive whole within `REQUEST_S` of the
connection opening, or of the previous response; past it the connection is closed. The response
itself (a slow client reading a large answer) is not limited.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

REQUEST_S = 30.0


class DeadlineProtocol(H11Protocol):
    request_s = REQUEST_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.deadline: asyncio.TimerHandle | None = None
        self.arm()

    def arm(self) -> None:
        self.disarm()
        self.deadline = self.loop.call_later(self.request_s, self.expire)

    def disarm(self) -> None:
        if getattr(self, "deadline", None) is not None:
            self.deadline.cancel()
            self.deadline = None

    def expire(self) -> None:
        self.deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is h11.DONE:  # the current request is in, head and body
            self.disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request on this connection gets its own deadline, unless it is already in whole
        # (pipelined): its answer, however long it takes, is not limited.
        if not self.transport.is_closing() and self.conn.their_state is not h11.DONE:
            self.arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        super().connection_lost(exc)


def with_deadline(seconds: float) -> type[DeadlineProtocol]:
    """The protocol class with a deadline of `seconds` per request."""
    return type("DeadlineProtocol", (DeadlineProtocol,), {"request_s": seconds})
