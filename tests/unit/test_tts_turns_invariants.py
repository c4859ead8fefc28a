"""Turns by piece, searched for counterexamples (backend.pipelines.turns; issue 23).

Promises, stated as invariants that Hypothesis tries to break over sequences of requests joining (short
and long), asking for turns, running pieces (cut when that helps someone, joined when a short request
finishes in one go, as the pipeline does), and leaving at a piece boundary (their client gone):

- at most `slots` pieces run at once, and whenever a slot is free and someone waits, someone's turn starts
  (an admitted request is never left waiting with the model idle: it is never refused for waiting);
- with one slot, a waiting request gets its turn after at most WAIT_PIECES(A) pieces of others, A being the
  most requests admitted at once while it waited ("shortest": (A - 1) * (MAX_OVERTAKEN + 1) + MAX_OVERTAKEN; round_robin: A - 1);
- a request's pieces run one at a time and in its own order, every token once: what it ran, in order, is
  its plan with cuts and joins, and the tickets' counts (pieces and tokens left) match what is left of it;
- one that leaves frees its place: nothing of it runs after, and it never holds a slot.

The pipeline's side of the same promises (the blocks it yields are every token once, in order, whatever
the turns decide) is `test_any_cuts_and_joins_say_every_token_once_in_order` below. No threads, no timing:
the machine drives the turns' non-blocking steps (ask, next_up, start, finish) as turn() does.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from backend.api.schemas.tts import validate_request
from backend.pipelines.turns import MAX_OVERTAKEN, SHORT_TOKENS, PieceTurns, Ticket
from config import build_settings
from tests.unit.test_tts_pipeline import ScriptedKokoro

CAP = 24  # TTS_CONTENDED_PIECE_TOKENS
PIECE_TOKENS = 100  # TTS_PIECE_TOKENS
ADMITTED = 4  # TTS_ADMITTED


def wait_pieces(rule: str, admitted: int) -> int:
    """The most pieces of others a waiting request sees before its turn, one slot, `admitted` at most at once."""
    return admitted * (MAX_OVERTAKEN + 1) - 1 if rule == "shortest" else admitted - 1


@dataclass
class Request:
    """One admitted request as the pipeline drives it: its plan (token counts), what it ran, where it is."""

    name: int
    ticket: Ticket
    plan: deque[int]
    ran: list[int] = field(default_factory=list)
    state: str = "idle"  # idle (between pieces: its audio leaving), waiting, running, gone
    seen_run: int = 0  # pieces others started since it asked
    most_admitted: int = 0  # the most requests admitted at once since it asked


class TurnsMachine(RuleBasedStateMachine):
    @initialize(rule_name=st.sampled_from(["shortest", "round_robin"]), slots=st.sampled_from([1, 1, 2]))
    def setup(self, rule_name: str, slots: int) -> None:
        self.turns = PieceTurns(slots, rule_name)
        self.rule_name, self.slots = rule_name, slots
        self.requests: list[Request] = []
        self.tokens_said: dict[int, int] = {}

    def live(self, *states: str) -> list[Request]:
        return [r for r in self.requests if r.state in states]

    @precondition(lambda self: len(self.live("idle", "waiting", "running")) < ADMITTED)
    @rule(plan=st.one_of(st.lists(st.integers(8, 30), min_size=1, max_size=2).filter(lambda p: sum(p) <= SHORT_TOKENS),
                         st.lists(st.integers(16, PIECE_TOKENS), min_size=1, max_size=6)))
    def join(self, plan: list[int]) -> None:
        ticket = self.turns.join(len(plan), sum(plan))
        self.requests.append(Request(len(self.requests), ticket, deque(plan)))
        self.tokens_said[len(self.requests) - 1] = sum(plan)

    @precondition(lambda self: any(r.plan for r in self.live("idle")))
    @rule(data=st.data())
    def ask(self, data) -> None:
        request = data.draw(st.sampled_from([r for r in self.live("idle") if r.plan]))
        self.turns.ask(request.ticket, request.plan[0])
        request.state, request.seen_run = "waiting", 0
        request.most_admitted = len(self.live("idle", "waiting", "running"))

    @precondition(lambda self: self.turns.next_up() is not None)
    @rule()
    def start(self) -> None:
        ticket = self.turns.next_up()
        request = next(r for r in self.requests if r.ticket is ticket)
        assert request.state == "waiting"
        cut = self.turns.start(ticket)
        piece = request.plan.popleft()
        if self.turns.whole(ticket):  # the pipeline joins what follows (no space tokens here)
            joined = 0
            while request.plan and piece + request.plan[0] <= PIECE_TOKENS:
                piece, joined = piece + request.plan.popleft(), joined + 1
            if joined:
                self.turns.merge(ticket, joined, piece)
        elif cut and piece > CAP:
            request.plan.appendleft(piece - CAP)
            piece = CAP
            self.turns.split(ticket, piece)
        request.ran.append(piece)
        request.state = "running"
        for other in self.live("waiting"):
            other.seen_run += 1

    @precondition(lambda self: bool(self.live("running")))
    @rule(data=st.data())
    def finish(self, data) -> None:
        request = data.draw(st.sampled_from(self.live("running")))
        self.turns.finish(request.ticket)
        request.state = "idle"

    @precondition(lambda self: bool(self.live("idle")))
    @rule(data=st.data())
    def leave(self, data) -> None:
        """Done, or its client went away: it leaves at a piece boundary."""
        request = data.draw(st.sampled_from(self.live("idle")))
        self.turns.leave(request.ticket)
        request.state = "gone"

    @invariant()
    def slots_bound_what_runs_and_a_free_slot_is_never_idle_while_someone_waits(self) -> None:
        if not hasattr(self, "turns"):
            return
        running = self.live("running")
        assert len(running) <= self.slots
        assert self.turns._free == self.slots - len(running)
        if self.live("waiting") and len(running) < self.slots:
            assert self.turns.next_up() is not None

    @invariant()
    def nobody_waits_longer_than_its_bound(self) -> None:
        if not hasattr(self, "turns"):
            return
        admitted = len(self.live("idle", "waiting", "running"))
        for request in self.live("waiting"):
            request.most_admitted = max(request.most_admitted, admitted)
            if self.slots == 1:
                assert request.seen_run <= wait_pieces(self.rule_name, request.most_admitted), request

    @invariant()
    def every_token_once_in_order_and_the_counts_match(self) -> None:
        if not hasattr(self, "turns"):
            return
        for request in self.live("idle", "waiting"):
            assert sum(request.ran) + sum(request.plan) == self.tokens_said[request.name]
            assert request.ticket.remaining == len(request.plan)
            assert request.ticket.work == sum(request.plan)
        for request in self.live("gone"):
            assert request.ticket not in self.turns._joined and not request.ticket.waiting


TestTurnsMachine = TurnsMachine.TestCase
TestTurnsMachine.settings = settings(max_examples=300, stateful_step_count=60, deadline=None, derandomize=True)


SENTENCES = ["The kettle is on, come and sit down.", "Ships passing in the dark trusted that light.",
             "Every night its keeper climbed the narrow stairs to light the lamp, and the harbour slept."]


class DecidedTurns(PieceTurns):
    """Turns whose cut and join decisions are drawn (Hypothesis), not derived: the pipeline must stay right."""

    def __init__(self, decisions: list[bool]) -> None:
        super().__init__(1, "shortest")
        self.decisions = deque(decisions)

    def _draw(self) -> bool:
        return self.decisions.popleft() if self.decisions else False

    def _cut_helps(self, ticket: Ticket) -> bool:
        return self._draw()

    def whole(self, ticket: Ticket) -> bool:
        return self._draw()


class RecordingKokoro(ScriptedKokoro):
    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.ids: list[list[int]] = []

    def _synthesize(self, token_ids, style, speed, last=True) -> np.ndarray:
        self.ids.append(list(token_ids))
        return super()._synthesize(token_ids, style, speed, last)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(sentences=st.lists(st.sampled_from(SENTENCES), min_size=1, max_size=4),
       pause=st.booleans(), decisions=st.lists(st.booleans(), max_size=40), first=st.sampled_from([0, 16]))
def test_any_cuts_and_joins_say_every_token_once_in_order(sentences, pause, decisions, first) -> None:
    pipe = RecordingKokoro(build_settings(prometheus_multiproc_dir=None, tts_first_piece_tokens=first,
                                          tts_piece_tokens=40, tts_contended_piece_tokens=12))
    pipe.load()
    text = (" [pause:0.1s] " if pause else " ").join(sentences)
    features = pipe.preprocess(validate_request(pipe.settings, text=text, fmt="wav"))
    planned = [t for item in features.plan if hasattr(item, "token_ids") for t in item.token_ids]
    pipe.turns = DecidedTurns(decisions)
    blocks = list(pipe.run(features).blocks)
    space = pipe.vocab[" "]
    said = [t for ids in pipe.ids for t in ids]
    # A cut drops the space token where it falls, a join puts one back: the rest is the plan, in order.
    assert [t for t in said if t != space] == [t for t in planned if t != space]
    assert all(len(ids) <= 40 for ids in pipe.ids) and blocks
    assert pipe.turns.active == 0 and pipe.turns.waiting == 0
