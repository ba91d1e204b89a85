"""`python -m collector replay`: real OKX frames, synthetic faults, both line formats, the CLI."""

from __future__ import annotations

import subprocess
import sys
import zlib
from pathlib import Path

import orjson
import pytest

from collector.cli import main
from collector.replay import Replay, replay_file, unwrap

REAL = Path(__file__).parent / "recordings" / "okx_public_2022_fragment.jsonl"


def crc(bids, asks) -> int:
    """Independent of collector/: OKX's checksum over the first 25 levels, interleaved."""
    parts = []
    for i in range(25):
        if i < len(bids):
            parts += bids[i][:2]
        if i < len(asks):
            parts += asks[i][:2]
    value = zlib.crc32(":".join(parts).encode())
    return value - 2**32 if value >= 2**31 else value


def book_frame(action, asks, bids, prev, seq, checksum=0, inst="BTC-USDT"):
    data = {"asks": asks, "bids": bids, "ts": "1700000000000", "prevSeqId": prev, "seqId": seq}
    if checksum is not None:
        data["checksum"] = checksum
    return orjson.dumps(
        {"arg": {"channel": "books", "instId": inst}, "action": action, "data": [data]}
    ).decode()


def test_real_okx_recording_verifies_every_checksum():
    summary = replay_file(str(REAL))
    assert summary["frames"] == 11
    assert summary["parse_errors"] == 0 and summary["unknown"] == 0
    assert summary["by_channel"] == {"books-l2-tbt": 4, "tickers": 2, "trades": 3}
    assert summary["books_checked"] == 4
    assert (summary["checksum_ok"], summary["checksum_mismatch"]) == (4, 0)


def test_synthetic_stream_counts_gaps_mismatches_and_junk(tmp_path):
    asks = [["101", "1", "0", "1"], ["102", "2", "0", "1"]]
    bids = [["100", "1", "0", "1"], ["99", "3", "0", "2"]]
    good_update_bids = [["100", "5", "0", "1"], ["99", "3", "0", "2"]]
    lines = [
        book_frame("snapshot", asks, bids, -1, 10, crc(bids, asks)),
        book_frame("update", [], [["100", "5", "0", "1"]], 10, 15, crc(good_update_bids, asks)),
        book_frame("update", [], [], 15, 15),  # heartbeat
        book_frame("update", [], [], 15, 3),  # reset after maintenance
        book_frame("update", [["103", "1", "0", "1"]], [], 3, 5, checksum=None),
        book_frame("update", [["104", "1", "0", "1"]], [], 7, 9),  # gap: prev 7 != last 5
        book_frame("update", [["105", "1", "0", "1"]], [], 9, 11),  # dropped: book invalid
        # Another instrument: a corrupted checksum (one level differs from what OKX summed).
        book_frame(
            "snapshot",
            asks,
            bids,
            -1,
            1,
            crc(bids, [["101", "9", "0", "1"], asks[1]]),
            inst="ETH-USDT",
        ),
        '{"arg":{"channel":"books","instId":"BTC',  # truncated
        "pong",
        '{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"}}',
        '{"arg":{"channel":"mark-price","instId":"BTC-USDT"},"data":[]}',
    ]
    path = tmp_path / "rec.txt"
    # Mix both line formats, plus a blank line that must be skipped.
    text = (
        "\n".join(
            orjson.dumps({"ts": 1.5, "frame": line}).decode() if i % 2 else line
            for i, line in enumerate(lines)
        )
        + "\n\n"
    )
    path.write_text(text)
    s = replay_file(str(path))
    assert s["frames"] == len(lines)
    assert (s["parse_errors"], s["unknown"], s["pongs"]) == (1, 1, 1)
    assert s["by_channel"] == {"books": 8} and s["events"] == {"subscribe": 1}
    assert (s["checksum_ok"], s["checksum_mismatch"], s["books_checked"]) == (2, 1, 3)
    assert (s["heartbeats"], s["seq_resets"], s["seq_gaps"], s["dropped_invalid"]) == (1, 1, 1, 1)


def test_crossed_book_is_counted():
    replay = Replay()
    replay.feed(book_frame("snapshot", [["100", "1", "0", "1"]], [["100.5", "1", "0", "1"]], -1, 1))
    assert replay.summary()["crossed"] == 1


def test_unwrap_leaves_raw_frames_alone():
    raw = b'{"arg":{"channel":"trades","instId":"X"},"data":[]}'
    assert unwrap(raw) == (None, raw)
    assert unwrap(b'{"ts": 3, "frame": "pong"}') == (3.0, "pong")
    # An object with other keys is a frame, not a wrapper.
    odd = b'{"ts": 3, "frame": "pong", "extra": 1}'
    assert unwrap(odd) == (None, odd)


def test_cli_json_is_the_last_line(tmp_path, capsys):
    assert main(["replay", str(REAL), "--json"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert orjson.loads(last)["checksum_ok"] == 4


def test_cli_human_summary(capsys):
    assert main(["replay", str(REAL)]) == 0
    out = capsys.readouterr().out
    assert "replayed 11 frames" in out and "mismatch 0" in out


@pytest.mark.parametrize("target", ["missing.txt", "."])
def test_cli_unreadable_file_is_a_clear_error(tmp_path, target):
    proc = subprocess.run(
        [sys.executable, "-m", "collector", "replay", str(tmp_path / target)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "cannot read" in proc.stderr and "Traceback" not in proc.stderr
