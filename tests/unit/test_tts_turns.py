"""Turns by piece (backend.pipelines.turns): admitted requests interleave piece by piece on one model slot.

Deterministic: threads wait on the scheduler's own state (who is running, who waits), never on time.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from backend.api.schemas.tts import validate_request
from backend.pipelines.turns import MAX_OVERTAKEN, SHORT_TOKENS, PieceTurns, Ticket, choose, cut_helps
from config import build_settings
from tests.unit.test_tts_pipeline import ScriptedKokoro

LONG = " [pause:0.1s] ".join(f"Piece number {n}." for n in range(1, 6))  # five pieces (a pause splits them)
SHORT = "Hi."


def test_round_robin_serves_in_order_of_asking() -> None:
    a, b, c = Ticket(9, asked=3), Ticket(1, asked=5), Ticket(4, asked=1)
    assert choose([a, b, c], "round_robin") is c


def test_shortest_puts_requests_with_few_pieces_left_first() -> None:
    long_early, short_late, other_short = Ticket(9, asked=1), Ticket(1, asked=7), Ticket(2, asked=8)
    assert choose([long_early, short_late, other_short], "shortest") is short_late
    assert choose([long_early, Ticket(3, asked=2)], "shortest") is long_early  # no short one: in order


def test_shortest_lets_a_long_request_through_after_it_was_overtaken_twice() -> None:
    long = Ticket(9, asked=1, overtaken=MAX_OVERTAKEN)
    assert choose([long, Ticket(1, asked=7)], "shortest") is long


def test_a_stream_of_short_requests_cannot_starve_a_long_one() -> None:
    turns = PieceTurns(slots=1, rule="shortest")
    holder, long = turns.join(1), turns.join(9)
    order: list[str] = []
    with turns.turn(holder):  # the slot is busy while the others queue
        def run(ticket: Ticket, name: str) -> None:
            with turns.turn(ticket):
                order.append(name)

        threads = [threading.Thread(target=run, args=(long, "long"))]
        threads[0].start()
        assert turns.wait_until(lambda t: t.waiting == 1, 60)
        for n in range(4):  # four short requests queue after the long one
            threads.append(threading.Thread(target=run, args=(turns.join(1), f"short{n}")))
            threads[-1].start()
            assert turns.wait_until(lambda t, k=n + 2: t.waiting == k, 60)
    for thread in threads:
        thread.join(60)
    assert order == ["short0", "short1", "long", "short2", "short3"]


def test_a_guard_turn_lets_one_long_request_through_not_every_one_waiting() -> None:
    """Two long requests overtaken twice: one of them goes, then short ones again (not both longs first)."""
    turns = PieceTurns(slots=1, rule="shortest")
    holder = turns.join(1)
    order: list[str] = []
    threads: list[threading.Thread] = []

    def run(ticket: Ticket, name: str) -> None:
        with turns.turn(ticket):
            order.append(name)

    def queue(ticket: Ticket, name: str) -> None:
        threads.append(threading.Thread(target=run, args=(ticket, name)))
        threads[-1].start()
        queued = len(threads)
        assert turns.wait_until(lambda t: t.waiting == queued, 60)

    with turns.turn(holder):
        queue(turns.join(9), "long1")
        queue(turns.join(9), "long2")
        for n in range(4):
            queue(turns.join(1), f"short{n}")
    for thread in threads:
        thread.join(60)
    # short0 and short1 overtake both longs twice; long1's guard turn starts long2's count again.
    assert order == ["short0", "short1", "long1", "short2", "short3", "long2"]


def test_a_piece_is_worth_cutting_only_for_someone_with_less_work_left_than_it() -> None:
    assert cut_helps(100, [37]) and cut_helps(100, [500, 0])
    assert not cut_helps(100, [500, 300]) and not cut_helps(100, [100]) and not cut_helps(100, [])


def test_long_requests_among_themselves_keep_full_pieces_and_a_short_one_makes_them_cut() -> None:
    turns = PieceTurns(slots=1, rule="shortest")
    alone = turns.join(5, 500)
    with turns.turn(alone, 100) as cut:
        assert not cut  # nobody else
    other_long = turns.join(5, 500)
    with turns.turn(alone, 100) as cut:
        assert not cut  # the other has more left than this piece
    with turns.turn(other_long, 100) as cut:
        assert not cut  # and so has this one, which ran since
    short = turns.join(1, 37)
    with turns.turn(alone, 100) as cut:
        assert cut  # a short request is admitted: it would wait for this piece
    with turns.turn(short, 37):
        pass
    turns.leave(short)
    with turns.turn(alone, 100) as cut:
        assert cut  # the short one left, but it ran since this one's last turn (the next may be on its way)
    with turns.turn(other_long, 100) as cut:
        assert cut  # so had it, since this one's last
    with turns.turn(alone, 100) as cut:
        assert not cut  # long ones only since: full pieces again
    with turns.turn(alone, 30) as cut:
        assert not cut
    turns.leave(alone)
    turns.leave(other_long)
    assert turns.active == 0


class GatedKokoro(ScriptedKokoro):
    """Records which request ran each piece; a piece of the request named in `hold` waits for `gate`."""

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.ran: list[str] = []
        self.hold: str | None = None
        self.gate = threading.Event()
        self.inside = threading.Event()

    def _synthesize(self, token_ids, style, speed, last=True) -> np.ndarray:
        name = threading.current_thread().name
        self.ran.append(name)
        if name == self.hold:
            self.inside.set()
            assert self.gate.wait(60)
            self.hold = None
        return super()._synthesize(token_ids, style, speed, last)


@pytest.fixture(params=["round_robin", "shortest"])
def pipe(request):
    pipeline = GatedKokoro(build_settings(prometheus_multiproc_dir=None, tts_first_piece_tokens=0,
                                          tts_turn_rule=request.param))
    pipeline.load()
    return pipeline


def speak(pipe, text: str, results: dict, name: str, stop_after: int | None = None) -> threading.Thread:
    def consume() -> None:
        blocks = pipe.run(pipe.preprocess(validate_request(pipe.settings, text=text, fmt="wav"))).blocks
        got = []
        for block in blocks:
            got.append(len(block))
            if stop_after is not None and len(got) >= stop_after:
                blocks.close()  # the client went away
                break
        results[name] = got

    thread = threading.Thread(target=consume, name=name, daemon=True)
    thread.start()
    return thread


def test_a_short_request_runs_at_the_long_ones_next_piece_boundary(pipe) -> None:
    results: dict = {}
    pipe.hold = "long"
    long = speak(pipe, LONG, results, "long")
    assert pipe.inside.wait(60)  # the long request is synthesising its first piece
    short = speak(pipe, SHORT, results, "short")
    assert pipe.turns.wait_until(lambda turns: turns.waiting == 1, 60)  # the short one waits its turn
    pipe.gate.set()
    short.join(60)
    long.join(60)
    assert pipe.ran[:2] == ["long", "short"]  # not after all five of the long one's pieces
    assert pipe.ran.count("long") == 5 and pipe.turns.active == 0


def test_two_long_requests_alternate_piece_by_piece(pipe) -> None:
    results: dict = {}
    pipe.hold = "first"
    first = speak(pipe, LONG, results, "first")
    assert pipe.inside.wait(60)
    second = speak(pipe, LONG, results, "second")
    assert pipe.turns.wait_until(lambda turns: turns.waiting == 1, 60)
    pipe.gate.set()
    first.join(60)
    second.join(60)
    # Each asks again only after its piece's audio was taken, the other having asked before: they alternate
    # (the consumer threads are free-running, so only the first four turns are fixed by the rule).
    assert pipe.ran[:2] == ["first", "second"] and sorted(pipe.ran) == ["first"] * 5 + ["second"] * 5


def test_piece_order_inside_a_request_does_not_change(pipe) -> None:
    results: dict = {}
    alone = ScriptedKokoro(pipe.settings)
    alone.load()
    expected = [len(b) for b in alone.run(alone.preprocess(validate_request(alone.settings, text=LONG,
                                                                            fmt="wav"))).blocks]
    pipe.hold = "short"
    short = speak(pipe, SHORT, results, "short")
    assert pipe.inside.wait(60)
    long = speak(pipe, LONG, results, "long")
    assert pipe.turns.wait_until(lambda turns: turns.waiting == 1, 60)
    pipe.gate.set()
    short.join(60)
    long.join(60)
    assert results["long"] == expected


def test_a_client_that_goes_away_frees_its_place_at_the_next_piece_boundary(pipe) -> None:
    results: dict = {}
    pipe.hold = "gone"
    gone = speak(pipe, LONG, results, "gone", stop_after=1)
    assert pipe.inside.wait(60)
    waiting = speak(pipe, SHORT, results, "waiting")
    assert pipe.turns.wait_until(lambda turns: turns.waiting == 1, 60)
    pipe.gate.set()
    gone.join(60)
    waiting.join(60)
    assert pipe.ran.count("gone") == 1  # its four other pieces were never synthesised
    assert results["waiting"] and pipe.turns.active == 0 and pipe.turns.waiting == 0


def test_one_slot_runs_one_piece_at_a_time() -> None:
    turns = PieceTurns(slots=1)
    a, b = turns.join(2), turns.join(2)
    running = []

    def piece(ticket: Ticket, name: str) -> None:
        with turns.turn(ticket):
            running.append(name)

    with turns.turn(a):
        other = threading.Thread(target=piece, args=(b, "b"))
        other.start()
        assert turns.wait_until(lambda t: t.waiting == 1, 60)
        assert running == []  # b waits while a holds the one slot
    other.join(60)
    assert running == ["b"]


CONTENDED_LONG = " ".join(f"Sentence number {n} goes on for a while." for n in range(1, 9))


def token_counts(pipe, text: str) -> list[int]:
    before = len(pipe.calls)
    blocks = list(pipe.run(pipe.preprocess(validate_request(pipe.settings, text=text, fmt="wav"))).blocks)
    assert blocks
    return [tokens for tokens, _ in pipe.calls[before:]]


def cutting_pipe(**settings) -> ScriptedKokoro:
    settings = {"tts_first_piece_tokens": 0, **settings}
    pipe = ScriptedKokoro(build_settings(prometheus_multiproc_dir=None, tts_piece_tokens=100,
                                         tts_contended_piece_tokens=24, **settings))
    pipe.load()
    return pipe


def test_a_request_cuts_its_long_pieces_for_a_short_one_and_says_every_token_once() -> None:
    pipe = cutting_pipe()
    alone = token_counts(pipe, CONTENDED_LONG)
    assert max(alone) > 24  # full pieces while nobody else is admitted
    other_long = pipe.turns.join(9, 10_000)  # another long request admitted (waiting for its client, say)
    assert token_counts(pipe, CONTENDED_LONG) == alone  # long ones among themselves: full pieces
    short = pipe.turns.join(1, 10)  # a short request admitted: each long piece is cut for it
    contended = token_counts(pipe, CONTENDED_LONG)
    pipe.turns.leave(short)
    pipe.turns.leave(other_long)
    assert max(contended) <= 24 and len(contended) > len(alone)
    # Each cut drops only the space token where it falls: the same tokens, in the same order.
    assert sum(contended) + (len(contended) - len(alone)) == sum(alone)
    assert pipe.calls[-1][1] is True and all(not last for _, last in pipe.calls[-len(contended):-1])
    assert pipe.turns.active == 0 and pipe.turns.waiting == 0


class SecondPieceWaits(GatedKokoro):
    """The request named "long" synthesises its second piece only once `second` is set."""

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.second = threading.Event()

    def _synthesize(self, token_ids, style, speed, last=True) -> np.ndarray:
        if threading.current_thread().name == "long" and self.ran.count("long") == 1:
            assert self.second.wait(60)
        return super()._synthesize(token_ids, style, speed, last)


@pytest.mark.parametrize("rule", ["round_robin", "shortest"])
def test_a_short_request_arriving_during_a_long_piece_gets_a_cut_piece_next(rule) -> None:
    pipe = SecondPieceWaits(cutting_pipe(tts_turn_rule=rule).settings)
    pipe.load()
    pipe.second.set()
    alone = token_counts(pipe, CONTENDED_LONG)
    del pipe.calls[:], pipe.ran[:]
    pipe.second.clear()
    results: dict = {}
    pipe.hold = "long"
    long = speak(pipe, CONTENDED_LONG, results, "long")
    assert pipe.inside.wait(60)  # the long request synthesises its first piece, in full
    short = speak(pipe, SHORT, results, "short")
    assert pipe.turns.wait_until(lambda turns: turns.waiting == 1, 60)
    pipe.gate.set()
    short.join(60)  # served and gone while the long one's second piece holds the slot
    pipe.second.set()
    long.join(60)
    long_tokens = [tokens for (tokens, _), name in zip(pipe.calls, pipe.ran, strict=True) if name == "long"]
    assert long_tokens[0] == alone[0] > 24 and pipe.ran[1] == "short"
    assert long_tokens[1] <= 24  # whoever waits for the slot now (the short one, or the next) waits less
    assert max(long_tokens[2:]) > 24  # the short one gone, the long one goes back to full pieces
    assert sum(long_tokens) + (len(long_tokens) - len(alone)) == sum(alone)  # every token once, in order


def test_a_cut_piece_keeps_each_words_tokens_on_its_side_of_the_cut() -> None:
    from backend.pipelines.tts.pipeline import TokenPiece
    from backend.pipelines.tts.words import WordSpan

    pipe = ScriptedKokoro(build_settings(prometheus_multiproc_dir=None))
    pipe.load()
    phonemes = "kˈʌm ænd sˈɪt dˈaʊn, plˈiz"  # 26 tokens; spaces at 4, 8, 13, 20; the comma at 19
    ids = [pipe.vocab[ch] for ch in phonemes if ch in pipe.vocab]
    words = (WordSpan(0, 0, 4), WordSpan(1, 5, 8), WordSpan(2, 9, 13), WordSpan(3, 14, 19), WordSpan(4, 21, 26))
    head, tail = pipe.split_piece(TokenPiece(ids, "sentence", words), 20)  # two parts of at most 13
    assert head.boundary == "word" and tail.boundary == "sentence"  # cut at the space after "sˈɪt"
    assert head.token_ids + [pipe.vocab[" "]] + tail.token_ids == ids and len(head.token_ids) == 13
    assert head.words == words[:3]
    assert tail.words == (WordSpan(3, 0, 5), WordSpan(4, 7, 12)) and len(tail.token_ids) == 12


KETTLE = "The kettle is on, come and sit down."  # two pieces alone (a short first piece for the listener)


def test_a_short_request_among_others_says_itself_in_one_model_call() -> None:
    pipe = cutting_pipe(tts_first_piece_tokens=16)
    alone = token_counts(pipe, KETTLE)
    assert len(alone) == 2 and sum(alone) <= SHORT_TOKENS  # alone: its first audio early, as before
    other_long = pipe.turns.join(9, 10_000)  # a long request admitted
    among = token_counts(pipe, KETTLE)
    assert among == [sum(alone) + 1]  # one call: the two pieces and the space between them
    assert pipe.calls[-1][1] is True  # it was its last piece (working memory released)
    pipe.turns.leave(other_long)
    assert token_counts(pipe, KETTLE) == alone and pipe.turns.active == 0


def test_a_long_request_among_others_is_not_joined() -> None:
    pipe = cutting_pipe(tts_first_piece_tokens=16)
    alone = token_counts(pipe, CONTENDED_LONG)
    other_long = pipe.turns.join(9, 10_000)
    assert token_counts(pipe, CONTENDED_LONG) == alone  # over SHORT_TOKENS: its pieces as planned (none short here)
    pipe.turns.leave(other_long)


def test_joined_pieces_keep_every_token_in_order_and_stop_at_a_pause_a_paragraph_or_the_cap() -> None:
    from collections import deque

    from backend.pipelines.tts.markup import Pause
    from backend.pipelines.tts.pipeline import TokenPiece
    from backend.pipelines.tts.words import WordSpan

    pipe = ScriptedKokoro(build_settings(prometheus_multiproc_dir=None))
    pipe.load()
    space = pipe.vocab[" "]
    a = TokenPiece([1, 2, 3], "clause", (WordSpan(0, 0, 3),))
    b = TokenPiece([4, 5], "sentence", (WordSpan(1, 0, 2),))
    c = TokenPiece([6, 7, 8], "paragraph", (WordSpan(2, 0, 3),))
    d = TokenPiece([9], "end")
    items = deque([b, c, d])
    joined, count = pipe.join_pieces(a, items, 100)
    assert count == 2 and list(items) == [d]  # not across the paragraph after c
    assert joined.token_ids == [1, 2, 3, space, 4, 5, space, 6, 7, 8] and joined.boundary == "paragraph"
    assert joined.words == (WordSpan(0, 0, 3), WordSpan(1, 4, 6), WordSpan(2, 7, 10))
    items = deque([Pause(0.5), b])
    assert pipe.join_pieces(a, items, 100) == (a, 0) and len(items) == 2  # not across a pause
    items = deque([b, c])
    joined, count = pipe.join_pieces(a, items, 6)  # 3 + 1 + 2 fits; one more would not
    assert count == 1 and joined.token_ids == [1, 2, 3, space, 4, 5] and list(items) == [c]
