"""Progress bars: redrawn on a terminal, plain lines in a redirected log."""

from __future__ import annotations

import io

from sam2long.runtime.progress import progress, write


def test_a_log_gets_plain_lines_without_cursor_codes(monkeypatch):
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    log = io.StringIO()  # not a terminal
    outer = progress(range(3), desc="videos", file=log, mininterval=0)
    for _ in outer:
        for _ in progress(range(4), desc="frames", file=log, leave=False, position=1, mininterval=0):
            pass
        write("a message between bars", file=log)
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert all(line.strip() for line in lines)
    assert any(line.startswith("videos: 100%") and "3/3" in line for line in lines), lines
    assert sum("frames: 100%" in line for line in lines) >= 3  # each inner bar's end is kept
    assert lines.count("a message between bars") == 3


def test_a_log_is_throttled_to_one_line_per_interval(monkeypatch):
    monkeypatch.setenv("TQDM_MININTERVAL", "3600")
    log = io.StringIO()
    for _ in progress(range(1000), desc="frames", file=log):
        pass
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "0/1000" in lines[0] and "1000/1000" in lines[1], lines
