"""Ludlum 375 frames: the parser as a table, the streaming reader's resynchronisation, and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suitemon.drivers.ludlum_frames import (
    Frame,
    FrameReader,
    FrameRejected,
    format_frame,
    format_reading,
    parse_frame,
)

GOOD = [
    # raw frame, reading, audio, high, low, over, monitor fail, error code
    (b"0642.1000000\r\n", 642.1, False, False, False, False, False, "0"),
    (b"0000.1000000\r\n", 0.1, False, False, False, False, False, "0"),
    (b"1234.0000000\r\n", 1234.0, False, False, False, False, False, "0"),  # the manual's xxxx.0 form
    (b"0000.0000000\r\n", 0.0, False, False, False, False, False, "0"),
    (b"9999.0100100\r\n", 9999.0, True, False, False, True, False, "0"),
    (b"0025.0110000\r\n", 25.0, True, True, False, False, False, "0"),
    (b"0007.5101000\r\n", 7.5, True, False, True, False, False, "0"),
    (b"0000.0000013\r\n", 0.0, False, False, False, False, True, "3"),
    (b"0012.3000000\r\n", 12.3, False, False, False, False, False, "0"),
    (b"1234.5000007\r\n", 1234.5, False, False, False, False, False, "7"),
    (b"0001.0000000\r\n", 1.0, False, False, False, False, False, "0"),
    (b"0001.000000E\r\n", 1.0, False, False, False, False, False, "E"),
]

BAD = [
    (b"0642.1000000\r", "length"),
    (b"0642.1000000\n\r", "CR LF"),
    (b"0642.10000000\r\n", "length"),
    (b"642.1000000\r\n", "length"),
    (b"0642.1000000\n\n", "CR LF"),
    (b"06421.000000\r\n"[:-3] + b"\r\n", "length"),
    (b"064211000000\r\n", "exactly one decimal point"),
    (b"06.2.1000000\r\n", "exactly one decimal point"),
    (b"0642,1000000\r\n", "characters other than digits"),
    (b" 642.1000000\r\n", "characters other than digits"),
    (b"-642.1000000\r\n", "characters other than digits"),
    (b".06421000000\r\n", "byte 5"),
    (b"06421.000000\r\n", "byte 5"),
    (b"064.21000000\r\n", "byte 5"),  # one corrupted byte must not read 642.1 as 64.21
    (b"00.123000000\r\n", "byte 5"),
    (b"0642.1200000\r\n", "audio status"),
    (b"0642.1020000\r\n", "high alarm status"),
    (b"0642.100X000\r\n", "low alarm status"),
    (b"0642.1000 00\r\n", "over range status"),
    (b"0642.10000" + b"\x00" + b"0\r\n", "monitor status"),
    (b"0642.100000a\r\n", "error code"),
    (b"0642.100000\xff\r\n", "error code"),
    (b"", "length"),
]


@pytest.mark.parametrize("raw,reading,audio,high,low,over,fail,code", GOOD)
def test_parse_good_frames(raw, reading, audio, high, low, over, fail, code):
    f = parse_frame(raw)
    assert (f.reading, f.audio, f.high_alarm, f.low_alarm, f.over_range, f.monitor_fail, f.error_code) == (
        reading,
        audio,
        high,
        low,
        over,
        fail,
        code,
    )
    assert f.faulted == (fail or code != "0")


@pytest.mark.parametrize("raw,why", BAD)
def test_parse_rejects_malformed_frames(raw, why):
    with pytest.raises(FrameRejected, match=why):
        parse_frame(raw)


@pytest.mark.parametrize(
    "value,text",
    [
        (0.0, "0000.0"),
        (0.1, "0000.1"),
        (7.5, "0007.5"),
        (32.0, "0032.0"),
        (99.99, "0100.0"),
        (642.1, "0642.1"),
        (999.96, "1000.0"),
        (1234.4, "1234.0"),
        (9999.4, "9999.0"),
    ],
)
def test_format_reading_uses_the_manuals_two_forms_and_round_trips(value, text):
    assert format_reading(value) == text
    assert parse_frame(format_frame(value)).reading == pytest.approx(value, abs=0.05 if value < 1000 else 0.5)


@pytest.mark.parametrize("value", [-0.1, float("nan"), 9999.6, 10000.0, 123456.0])
def test_format_reading_refuses_what_the_display_cannot_show(value):
    with pytest.raises(ValueError):
        format_reading(value)


def frames_of(reader: FrameReader, chunks) -> list[Frame]:
    out = []
    for data, at in chunks:
        out += reader.feed(data, at)
    return out


F1, F2, F3 = (format_frame(v) for v in (0.1, 25.0, 7.5))

STREAMS = [
    # name, chunks (bytes, arrival time), gap_s, readings expected, bad frames expected
    ("clean stream", [(F1, 0.0), (F2, 2.0), (F3, 4.0)], 1.0, [0.1, 25.0, 7.5], 0),
    (
        "frames split anywhere",
        [(F1[:5], 0.0), (F1[5:] + F2[:13], 0.01), (F2[13:], 0.02)],
        1.0,
        [0.1, 25.0],
        0,
    ),
    ("all in one chunk", [(F1 + F2 + F3, 0.0)], 1.0, [0.1, 25.0, 7.5], 0),
    ("joined mid-frame at start", [(F1[6:] + F2, 0.0)], 1.0, [25.0], 1),
    (
        "garbage glued to a frame is rejected, next frame read",
        [(b"\x93\x11zz" + F1, 0.0), (F2, 2.0)],
        None,
        [25.0],
        1,
    ),
    ("garbage with its own CR LF", [(b"junk\r\n" + F1, 0.0)], None, [0.1], 1),
    (
        "long garbage counted once",
        [(b"\xaa" * 100, 0.0), (b"\xbb" * 100 + b"\r\n", 0.1), (F1, 0.2)],
        None,
        [0.1],
        1,
    ),
    ("partial frame then silence then a frame (gap resync)", [(F1[:7], 0.0), (F2, 2.0)], 1.0, [25.0], 1),
    ("partial frame glued to the next without a gap", [(F1[:7], 0.0), (F2, 0.1)], 1.0, [], 1),
    ("two frames run together without CR LF", [(F1[:12] + F2, 0.0)], 1.0, [], 1),
    ("CR split from LF", [(F1[:13], 0.0), (F1[13:], 0.01)], 1.0, [0.1], 0),
    ("corrupt status byte", [(F1[:8] + b"7" + F1[9:], 0.0), (F3, 2.0)], 1.0, [7.5], 1),
]


@pytest.mark.parametrize("name,chunks,gap,readings,bad", STREAMS, ids=[s[0] for s in STREAMS])
def test_reader_resynchronises(name, chunks, gap, readings, bad):
    reader = FrameReader(gap_s=gap)
    got = frames_of(reader, chunks)
    assert [f.reading for f in got] == readings
    assert reader.bad_frames == bad
    assert reader.frames == len(readings)


def test_reader_stamps_frames_with_arrival_of_their_last_byte():
    reader = FrameReader(gap_s=1.0)
    assert reader.feed(F1[:10], 5.0) == []
    (f,) = reader.feed(F1[10:], 5.3)
    assert f.at == 5.3


def test_reset_forgets_half_frames_but_keeps_counters():
    reader = FrameReader(gap_s=None)
    reader.feed(b"junk\r\n" + F1[:8], 0.0)
    reader.reset()
    assert [f.reading for f in reader.feed(F2, 0.1)] == [25.0]
    assert reader.bad_frames == 1 and reader.frames == 1


# -- fuzzing ------------------------------------------------------------------------
chunk = st.tuples(st.binary(max_size=40), st.floats(min_value=0, max_value=5, allow_nan=False))
valid_frame = st.builds(
    format_frame,
    st.floats(min_value=0, max_value=9999.4, allow_nan=False),
    audio=st.booleans(),
    high_alarm=st.booleans(),
    over_range=st.booleans(),
    error_code=st.sampled_from("0123456789AZ"),
)
piece = st.one_of(
    st.binary(max_size=30), valid_frame, valid_frame.map(lambda f: f[:7]), st.just(b"\r\n"), st.just(b"\r")
)


def _check_frames(frames: list[Frame], stream: bytes) -> None:
    for f in frames:
        assert parse_frame(f.raw, f.at) == f  # re-checks cleanly: it passed every check
        assert len(f.raw) == 14 and f.raw.endswith(b"\r\n")
        assert f.raw in stream


@settings(max_examples=400, deadline=None)
@given(st.lists(chunk, max_size=30), st.one_of(st.none(), st.floats(min_value=0.01, max_value=2)))
def test_random_bytes_never_crash_and_never_yield_an_unchecked_frame(chunks, gap):
    reader = FrameReader(gap_s=gap)
    t, stream, frames = 0.0, b"", []
    for data, dt in chunks:
        t += dt
        stream += data
        frames += reader.feed(data, t)
    _check_frames(frames, stream)
    assert reader.frames == len(frames)


@settings(max_examples=300, deadline=None)
@given(st.lists(piece, max_size=25), st.randoms(use_true_random=False))
def test_frames_mixed_with_garbage_only_yield_checked_frames(pieces, rnd):
    stream = b"".join(pieces)
    reader = FrameReader(gap_s=None)
    frames, i = [], 0
    while i < len(stream):  # random chunking of the same stream
        n = rnd.randint(1, 20)
        frames += reader.feed(stream[i : i + n], 0.0)
        i += n
    _check_frames(frames, stream)
    # Reference model: a frame is exactly the 12 bytes between two CR LFs (or the stream
    # start and a CR LF) that pass parse_frame; nothing else ever becomes a reading.
    expected = []
    for seg in stream.split(b"\r\n")[:-1]:
        try:
            expected.append(parse_frame(seg + b"\r\n").raw)
        except FrameRejected:
            pass
    assert [f.raw for f in frames] == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(valid_frame, min_size=1, max_size=10), st.binary(max_size=30))
def test_after_any_garbage_the_reader_is_back_in_step_within_one_frame(good, garbage):
    reader = FrameReader(gap_s=None)
    frames = reader.feed(garbage + b"\r\n" + b"".join(good), 0.0)
    assert [f.raw for f in frames][-len(good) :] == good
