"""Property tests: any one field of a valid frame of any channel changed (another type,
non-numeric, empty, missing, huge, unicode digits, nested...) never makes the parser or the
feeder's Pipeline raise, and whatever the parser accepts satisfies OKX's documented types per an
independent checker (tests/frame_mutators.py, which shares no code with okx/schemas.py)."""

from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.pipeline import Pipeline
from okx.parse import parse_frame
from okx.records import Data, ParseError
from tests.frame_mutators import encode, item_ok, mutate
from tests.recordings.okx_docs_frames import WS_FRAMES

CHANNELS = sorted(WS_FRAMES)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CHANNELS), st.integers(0, 2**32))
def test_one_mutated_field_is_rejected_or_valid(channel: str, seed: int) -> None:
    _, frame, label = mutate(random.Random(seed), channel)
    raw = encode(frame)
    result = parse_frame(raw)  # never raises
    item = frame["data"][0]
    if item_ok(channel, item, frame):
        assert type(result) is Data, (label, result)
    else:
        assert type(result) is ParseError, (label, result)
        assert result.reason.startswith(channel), result.reason  # names the channel
        assert result.raw  # the frame is kept for the log line and the recorder


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(CHANNELS), st.integers(0, 2**32)), max_size=30))
def test_any_sequence_of_mutated_frames_never_breaks_the_pipeline(
    frames: list[tuple[str, int]],
) -> None:
    out: list[tuple] = []
    p = Pipeline(lambda *rec: out.append(rec), full_every_ms=0)
    for now, (channel, seed) in enumerate(frames):
        rng = random.Random(seed)
        # half the frames valid (so books exist and trades dedupe), half mutated
        if seed % 2:
            frame = WS_FRAMES[channel]
        else:
            frame = mutate(rng, channel)[1]
        p.feed(1, encode(frame), now * 10)
    for rec in out:
        kind, payload = rec[0], rec[5]
        if kind == "trades":
            assert payload["tradeId"].isascii() and payload["tradeId"].isdigit()


def test_the_docs_frames_are_valid_per_the_independent_checker() -> None:
    """The checker and the fixture agree (else the properties above would test nothing)."""
    for channel, frame in WS_FRAMES.items():
        assert item_ok(channel, frame["data"][0], frame), channel
        assert type(parse_frame(json.dumps(frame))) is Data, channel
