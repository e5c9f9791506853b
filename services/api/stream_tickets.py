"""Short-lived, single-use tickets for the WebSocket gateway.

A browser cannot set headers on a WebSocket, and an API key in the URL ends up in proxy and
access logs. So the console asks for a ticket with its key in a header
(`POST /api/v1/stream/tickets`) and opens `/api/v1/stream?ticket=...`: the ticket stands for
the key's principal once, within `ttl_s`. A logged ticket is worthless: used or expired.

Tickets live in the memory of the API process that issued them: behind a load balancer with
several API instances, the ticket request and the WebSocket must reach the same instance
(sticky sessions), or the console gets 401 and asks again.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from typing import Callable

from aiohttp import web

from services.api.auth import Principal, principal


class TicketBook:
    def __init__(self, ttl_s: float = 30.0, max_outstanding: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.max_outstanding, self.clock = ttl_s, max_outstanding, clock
        self._tickets: OrderedDict[str, tuple[float, Principal]] = OrderedDict()  # issue order

    def issue(self, who: Principal) -> str:
        self._forget_expired()
        while len(self._tickets) >= self.max_outstanding:  # bounded: the oldest unused goes first
            self._tickets.popitem(last=False)
        ticket = secrets.token_urlsafe(32)
        self._tickets[ticket] = (self.clock() + self.ttl_s, who)
        return ticket

    def redeem(self, ticket: str | None) -> Principal | None:
        """The ticket's principal, once; None when unknown, used or expired."""
        if not ticket:
            return None
        entry = self._tickets.pop(ticket, None)
        if entry is None or entry[0] < self.clock():
            return None
        return entry[1]

    def _forget_expired(self) -> None:
        now = self.clock()
        while self._tickets:
            first = next(iter(self._tickets))
            if self._tickets[first][0] >= now:
                break
            del self._tickets[first]


BOOK = web.AppKey("stream_tickets", TicketBook)


async def create_ticket(request: web.Request) -> web.Response:
    book = request.app[BOOK]
    ticket = book.issue(principal(request))
    return web.json_response({"ticket": ticket, "expires_in_s": book.ttl_s,
                              "url": f"/api/v1/stream?ticket={ticket}"}, status=201)


def add_routes(app: web.Application, book: TicketBook) -> None:
    app[BOOK] = book
    app.router.add_post("/api/v1/stream/tickets", create_ticket)
