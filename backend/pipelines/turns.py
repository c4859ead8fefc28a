"""Turns by piece: the requests admitted to one model take its running slots one piece at a time.

A TTS request is a sequence of pieces. If each request held the model from its first piece to its
last, one long text would keep every short request waiting for minutes. Instead each admitted
request joins the model's PieceTurns, asks for a turn before each piece and gives it back after:
at most `slots` pieces run at once (MODEL_CONCURRENCY, each one piece's activations: memory is
what it was), and the next turn goes to the request the rule picks among those waiting:

- "round_robin": whoever asked first. A request that has just run asks again only after its
  audio left, so every waiting request runs one piece before any runs two.
- "shortest": requests with at most SHORT_PIECES pieces left first (in order of asking), then the
  others round-robin: a one-sentence request overtakes long ones at the next piece boundary. So that
  a stream of short requests cannot starve a long one, a request overtaken MAX_OVERTAKEN times goes
  next: a long stream's gap is at most that many short pieces plus the others' turns.

A request is never refused for waiting its turn (queue bounds count requests waiting to be
*admitted*, in the registry). Piece order inside a request is its own loop's: turns only decide
which request's loop goes next. A request that ends early (its client went away: the stream is
closed at a piece boundary) leaves, and its place goes to the next. `choose` is the rule alone,
a pure function of the waiting tickets, so it is tested on its own.
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

RULES = ("round_robin", "shortest")
SHORT_PIECES = 2  # "shortest": a request with this many pieces left or fewer goes first
MAX_OVERTAKEN = 2  # "shortest": a request passed over this many times goes next


@dataclass
class Ticket:
    """One admitted request's place: how many pieces it has left, and when it last asked for a turn."""

    remaining: int
    asked: int = 0
    waiting: bool = False
    overtaken: int = 0  # turns given to requests that asked after this one, since it asked


def choose(waiting: Sequence[Ticket], rule: str) -> Ticket:
    """The ticket whose turn is next among those waiting (not empty)."""
    if rule == "shortest":
        return min(waiting, key=lambda t: (t.overtaken < MAX_OVERTAKEN, t.remaining > SHORT_PIECES, t.asked))
    return min(waiting, key=lambda t: t.asked)


class PieceTurns:
    """Running slots of one model, handed out one piece at a time by `rule` (module docstring)."""

    def __init__(self, slots: int = 1, rule: str = "round_robin") -> None:
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; one of {', '.join(RULES)}")
        self.slots, self.rule = slots, rule
        self._free = slots
        self._waiting: list[Ticket] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self.active = 0  # tickets joined and not yet left

    def join(self, pieces: int) -> Ticket:
        with self._changed:
            self.active += 1
        return Ticket(remaining=pieces)

    def leave(self, ticket: Ticket) -> None:
        with self._changed:
            self.active -= 1
            ticket.remaining = 0

    @property
    def waiting(self) -> int:
        with self._changed:
            return len(self._waiting)

    @contextmanager
    def turn(self, ticket: Ticket) -> Iterator[None]:
        """Wait for this ticket's turn, hold one slot while the body runs one piece, then pass the turn on."""
        with self._changed:
            ticket.asked, ticket.waiting, ticket.overtaken = next(self._order), True, 0
            self._waiting.append(ticket)
            self._changed.notify_all()  # for observers (tests) waiting for a request to queue
            while not (self._free > 0 and choose(self._waiting, self.rule) is ticket):
                self._changed.wait()
            self._waiting.remove(ticket)
            ticket.waiting = False
            for other in self._waiting:
                other.overtaken += other.asked < ticket.asked
            self._free -= 1
        try:
            yield
        finally:
            with self._changed:
                self._free += 1
                ticket.remaining = max(0, ticket.remaining - 1)
                self._changed.notify_all()

    def wait_until(self, predicate, timeout_s: float | None = None) -> bool:
        """Block until predicate(self) holds (checked whenever turns change); for observers and tests."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout_s)
