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
  next, and that turn starts every other waiting request's count again: one long piece between
  every MAX_OVERTAKEN short ones (were the others' counts kept, every long request waiting would go
  before the next short one), and a long stream's gap is at most that many short pieces per long
  request waiting.

A turn also says whether cutting the piece it runs would help someone (`cut_helps`): another
admitted request has less work left (tokens) than this piece, or one that did took a turn since this
one's last (short requests come in bursts: the next one is likely on its way). The pipeline then cuts
the piece (TTS_CONTENDED_PIECE_TOKENS), so that the short request waits for a short piece. Long
requests among themselves keep their full pieces (each model call also synthesises padding: cutting
costs CPU), and take turns piece by piece; a request alone keeps them too.

A short request (SHORT_TOKENS in all: a sentence) while another is admitted, or one ran since its last
turn, finishes in one go (`whole`): the pipeline joins its pieces into one model call (a short first piece
only serves a listener with nobody to wait for). No long piece comes between its two pieces, it pays one
call's padding instead of two, and whoever waits for it waits for one sentence. Alone it keeps its short
first piece. Measured against the alternatives (keeping the slot between its own pieces, shortest-remaining-
first by tokens, other cut sizes): docs/BENCHMARKS.md, issue 23.

What is promised, and searched for counterexamples (tests/unit/test_tts_turns_invariants.py): at most
`slots` pieces run at once and a free slot never idles while someone waits; with one slot, a waiting
request gets its turn after at most (A - 1) * (MAX_OVERTAKEN + 1) + MAX_OVERTAKEN pieces of others under
"shortest" (A - 1 under "round_robin"), A being the most requests admitted at once meanwhile; a request's
pieces run in its own order, every token once.

A request is never refused for waiting its turn (queue bounds count requests waiting to be
*admitted*, in the registry). Piece order inside a request is its own loop's: turns only decide
which request's loop goes next. A request that ends early (its client went away: the stream is
closed at a piece boundary) leaves, and its place goes to the next. `choose` is the rule alone,
a pure function of the waiting tickets, so it is tested on its own.
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

RULES = ("round_robin", "shortest")
SHORT_PIECES = 2  # "shortest": a request with this many pieces left or fewer goes first
MAX_OVERTAKEN = 2  # "shortest": a request passed over this many times goes next
SHORT_TOKENS = 48  # a request with at most this many tokens left, others admitted, finishes in one model call


@dataclass(eq=False)  # a ticket is one request's place: two with the same counts are still two (leave, remove)
class Ticket:
    """One admitted request's place: how many pieces and tokens it has left, and when it last asked for a turn."""

    remaining: int
    work: int = 0  # tokens left to synthesise, the piece asked for included
    size: int = 0  # tokens to synthesise in all, as it joined
    piece: int = 0  # tokens of the piece it asked a turn for (or runs)
    seen: int | None = None  # least work left of a request that took a turn since this one's last
    asked: int = 0
    waiting: bool = False
    overtaken: int = 0  # turns given to requests that asked after this one, since it asked


def cut_helps(piece: int, others_work: Iterable[int]) -> bool:
    """Whether a piece of `piece` tokens is worth cutting: someone with less work left than it would wait for it."""
    return any(work < piece for work in others_work)


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
        self._joined: list[Ticket] = []  # tickets joined and not yet left

    @property
    def active(self) -> int:
        with self._changed:
            return len(self._joined)

    def join(self, pieces: int, tokens: int = 0) -> Ticket:
        ticket = Ticket(remaining=pieces, work=tokens, size=tokens)
        with self._changed:
            self._joined.append(ticket)
        return ticket

    def leave(self, ticket: Ticket) -> None:
        with self._changed:
            if ticket in self._joined:
                self._joined.remove(ticket)
            ticket.remaining = ticket.work = 0

    @property
    def waiting(self) -> int:
        with self._changed:
            return len(self._waiting)

    def split(self, ticket: Ticket, head: int = 0) -> None:
        """The piece whose turn this is was cut in two: one more piece left, and this turn runs `head` tokens."""
        with self._changed:
            ticket.remaining += 1
            ticket.piece = head

    def merge(self, ticket: Ticket, joined: int, tokens: int) -> None:
        """The piece whose turn this is took the request's next `joined` pieces in: fewer pieces left, `tokens` now."""
        with self._changed:
            ticket.remaining = max(1, ticket.remaining - joined)
            ticket.piece = tokens

    def whole(self, ticket: Ticket) -> bool:
        """Whether `ticket`, whose turn this is, should say what it has left in one go (module docstring): a short
        request, and another one admitted or one that ran since its last turn."""
        with self._changed:
            contended = ticket.seen is not None or any(other is not ticket for other in self._joined)
            return contended and 0 < ticket.size <= SHORT_TOKENS

    @contextmanager
    def turn(self, ticket: Ticket, tokens: int = 0) -> Iterator[bool]:
        """Wait for this ticket's turn, hold one slot while the body runs one piece of `tokens`, then pass the turn on.

        Yields whether cutting the piece helps someone (`cut_helps`, module docstring)."""
        with self._changed:
            self.ask(ticket, tokens)
            while self.next_up() is not ticket:
                self._changed.wait()
            contended = self.start(ticket)
        try:
            yield contended
        finally:
            self.finish(ticket)

    # The steps of a turn, without blocking (turn() waits between ask and start; tests drive them directly).

    def ask(self, ticket: Ticket, tokens: int = 0) -> None:
        """`ticket` asks for a turn to run a piece of `tokens`."""
        with self._changed:
            ticket.asked, ticket.waiting, ticket.overtaken, ticket.piece = next(self._order), True, 0, tokens
            self._waiting.append(ticket)
            self._changed.notify_all()  # for observers (tests) waiting for a request to queue

    def next_up(self) -> Ticket | None:
        """The waiting ticket whose turn starts now, None while no slot is free or nobody waits."""
        with self._changed:
            return choose(self._waiting, self.rule) if self._free > 0 and self._waiting else None

    def start(self, ticket: Ticket) -> bool:
        """`ticket` (next_up) takes a slot; whether cutting its piece helps someone."""
        with self._changed:
            self._waiting.remove(ticket)
            ticket.waiting = False
            self._passed(ticket)
            contended = self._cut_helps(ticket)
            ticket.seen = None
            self._ran(ticket, ticket.work)
            self._free -= 1
            return contended

    def finish(self, ticket: Ticket) -> None:
        """`ticket`'s piece is done: its slot goes to the next."""
        with self._changed:
            self._free += 1
            ticket.remaining = max(0, ticket.remaining - 1)
            ticket.work = max(0, ticket.work - ticket.piece)
            self._changed.notify_all()

    def _cut_helps(self, ticket: Ticket) -> bool:
        """Whether `ticket`'s piece is worth cutting: see cut_helps (the others admitted, and who ran since its last turn)."""
        others = [other.work for other in self._joined if other is not ticket]
        return cut_helps(ticket.piece, others if ticket.seen is None else [*others, ticket.seen])

    def _ran(self, ticket: Ticket, left: int) -> None:
        """Each other admitted request's next turn knows the least work left of those that ran since its last."""
        for other in self._joined:
            if other is not ticket:
                other.seen = left if other.seen is None else min(other.seen, left)

    def _passed(self, ticket: Ticket) -> None:
        """Count the turn `ticket` takes against the waiting requests it overtakes (the guard of "shortest")."""
        if ticket.overtaken >= MAX_OVERTAKEN:  # the guard's turn: the others count again from here
            for other in self._waiting:
                other.overtaken = 0
            return
        for other in self._waiting:
            other.overtaken += other.asked < ticket.asked

    def wait_until(self, predicate, timeout_s: float | None = None) -> bool:
        """Block until predicate(self) holds (checked whenever turns change); for observers and tests."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout_s)
