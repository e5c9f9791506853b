"""Single-use, short-lived WebSocket tickets (services/api/stream_tickets.py)."""

from services.api.auth import Principal
from services.api.stream_tickets import TicketBook

ACME = Principal("k-acme", "acme")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_ticket_stands_for_its_principal_once():
    book = TicketBook(ttl_s=30)
    ticket = book.issue(ACME)
    assert len(ticket) >= 40  # 32 random bytes
    assert book.redeem(ticket) == ACME
    assert book.redeem(ticket) is None  # used
    assert book.redeem("made-up") is None and book.redeem(None) is None and book.redeem("") is None


def test_an_expired_ticket_is_refused_and_forgotten():
    clock = Clock()
    book = TicketBook(ttl_s=30, clock=clock)
    old, fresh = book.issue(ACME), None
    clock.now = 30.5
    fresh = book.issue(Principal("k-globex", "globex"))  # issuing forgets what expired
    assert old not in book._tickets
    assert book.redeem(old) is None
    assert book.redeem(fresh) == Principal("k-globex", "globex")


def test_outstanding_tickets_are_bounded_oldest_first():
    book = TicketBook(max_outstanding=3)
    tickets = [book.issue(ACME) for _ in range(5)]
    assert [book.redeem(t) for t in tickets] == [None, None, ACME, ACME, ACME]
