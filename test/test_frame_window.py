"""repflow_ros.frame_window: windowing, cadence, skipping, resets and the blocking hand-off (no ROS needed)."""

import threading
import time

import numpy as np
import pytest

from repflow_ros.frame_window import RESET_REASONS, FrameWindow, Window

FPS = 30.0


def frame(i, shape=(2, 2)):
    return np.full(shape, i, dtype=np.int32)


def push_n(win, start, count, shape=(2, 2), t0=100.0):
    """Push frames start .. start+count-1 with stamps t0 + i / FPS; returns the PushResults."""
    return [win.push(frame(i, shape), t0 + i / FPS, frame_id=f"cam{i}") for i in range(start, start + count)]


def ids(window: Window):
    return [int(f.flat[0]) for f in window.frames]


def test_not_ready_until_full():
    win = FrameWindow(clip_len=4, hop=2)
    results = push_n(win, 0, 3)
    assert not any(r.window_ready for r in results)
    assert win.take_ready(timeout=0) is None
    assert win.push(frame(3), 100.0 + 3 / FPS, frame_id="cam3").window_ready
    window = win.take_ready(timeout=0)
    assert ids(window) == [0, 1, 2, 3]
    assert window.stamps == pytest.approx([100.0 + i / FPS for i in range(4)])
    assert window.stamp == pytest.approx(100.0 + 3 / FPS) and window.frame_id == "cam3"


def test_ready_every_hop_frames_after_full():
    win = FrameWindow(clip_len=4, hop=3)
    ready_at = [i for i, r in enumerate(push_n(win, 0, 14)) if r.window_ready]
    assert ready_at == [3, 6, 9, 12]
    assert win.stats()["windows_ready"] == 4


def test_each_taken_window_ends_at_its_ready_frame():
    win = FrameWindow(clip_len=3, hop=2)
    taken = []
    for i in range(8):
        win.push(frame(i), 100.0 + i / FPS)
        w = win.take_ready(timeout=0)
        if w is not None:
            taken.append(ids(w))
    assert taken == [[0, 1, 2], [2, 3, 4], [4, 5, 6]]
    assert win.stats()["windows_skipped_busy"] == 0


def test_frame_stride_picks_every_nth_frame_ending_at_newest():
    win = FrameWindow(clip_len=3, frame_stride=2, hop=1)
    push_n(win, 0, 4)
    assert win.take_ready(timeout=0) is None  # needs (3 - 1) * 2 + 1 = 5 frames
    push_n(win, 4, 1)
    assert ids(win.take_ready(timeout=0)) == [0, 2, 4]
    push_n(win, 5, 1)
    assert ids(win.take_ready(timeout=0)) == [1, 3, 5]


def test_newest_window_returned_and_stale_ones_counted_as_skipped():
    win = FrameWindow(clip_len=2, hop=1)
    push_n(win, 0, 6)  # windows ready at frames 1..5; nobody took any
    window = win.take_ready(timeout=0)
    assert ids(window) == [4, 5]
    assert window.seq == 5 and window.skipped_before == 4
    assert win.take_ready(timeout=0) is None  # consumed
    stats = win.stats()
    assert stats["windows_ready"] == 5
    assert stats["windows_taken"] == 1
    assert stats["windows_skipped_busy"] == 4


def test_time_jump_backwards_resets_and_is_counted():
    win = FrameWindow(clip_len=3, hop=1)
    push_n(win, 0, 3)
    result = win.push(frame(3), 50.0)  # bag looped
    assert result.reset and result.reason == "time_jump_backwards" and result.buffered == 1
    assert win.take_ready(timeout=0) is None  # the pending window of the old segment was discarded
    stats = win.stats()
    assert stats["resets"]["time_jump_backwards"] == 1 and stats["resets_total"] == 1
    assert stats["windows_discarded"] == 1


def test_frame_gap_resets_and_is_counted():
    win = FrameWindow(clip_len=3, hop=1, max_frame_gap=0.5)
    win.push(frame(0), 10.0)
    assert not win.push(frame(1), 10.5).reset  # exactly the limit is fine
    result = win.push(frame(2), 11.2)
    assert result.reset and result.reason == "frame_gap"
    assert win.stats()["resets"] == {"time_jump_backwards": 0, "frame_gap": 1, "size_change": 0}


def test_size_change_resets_and_is_counted():
    win = FrameWindow(clip_len=3, hop=1)
    push_n(win, 0, 2, shape=(2, 2))
    result = win.push(frame(2, shape=(3, 2)), 100.0 + 2 / FPS)
    assert result.reset and result.reason == "size_change" and result.buffered == 1
    assert win.stats()["resets"]["size_change"] == 1


def test_window_after_reset_uses_only_new_segment_and_new_epoch():
    win = FrameWindow(clip_len=3, hop=1)
    push_n(win, 0, 3)
    first = win.take_ready(timeout=0)
    for i, t in enumerate([5.0, 5.03, 5.06]):
        win.push(frame(10 + i), t)
    second = win.take_ready(timeout=0)
    assert ids(second) == [10, 11, 12]
    assert second.epoch == first.epoch + 1


def test_equal_stamps_do_not_reset():
    win = FrameWindow(clip_len=2, hop=1)
    win.push(frame(0), 1.0)
    assert not win.push(frame(1), 1.0).reset


def test_reset_reasons_constant():
    assert set(RESET_REASONS) == {"time_jump_backwards", "frame_gap", "size_change"}


def test_take_ready_blocks_until_push_from_another_thread():
    win = FrameWindow(clip_len=2, hop=1)
    win.push(frame(0), 1.0)
    got = []
    started = threading.Event()

    def consumer():
        started.set()
        got.append(win.take_ready(timeout=5.0))

    thread = threading.Thread(target=consumer)
    thread.start()
    started.wait(1.0)
    time.sleep(0.02)
    assert not got  # still waiting
    win.push(frame(1), 1.03)
    thread.join(2.0)
    assert not thread.is_alive()
    assert got and ids(got[0]) == [0, 1]


def test_take_ready_times_out_with_none():
    win = FrameWindow(clip_len=2)
    t0 = time.monotonic()
    assert win.take_ready(timeout=0.05) is None
    assert time.monotonic() - t0 >= 0.04


def test_close_unblocks_waiters_and_take_returns_none():
    win = FrameWindow(clip_len=2, hop=1)
    got = []
    thread = threading.Thread(target=lambda: got.append(win.take_ready()))
    thread.start()
    time.sleep(0.02)
    win.close()
    thread.join(2.0)
    assert not thread.is_alive() and got == [None]
    push_n(win, 0, 2)
    assert win.closed and win.take_ready(timeout=0) is None


def test_set_hop_changes_cadence():
    win = FrameWindow(clip_len=2, hop=4)
    ready_at = [i for i, r in enumerate(push_n(win, 0, 6)) if r.window_ready]
    assert ready_at == [1, 5]
    win.set_hop(1)
    ready_at = [i for i, r in enumerate(push_n(win, 6, 3), start=6) if r.window_ready]
    assert ready_at == [6, 7, 8]
    assert win.hop == 1
    with pytest.raises(ValueError):
        win.set_hop(0)


def test_clear_drops_frames_and_pending_window_without_counting_a_reset():
    win = FrameWindow(clip_len=2, hop=1)
    push_n(win, 0, 2)
    win.clear()
    assert len(win) == 0 and win.take_ready(timeout=0) is None
    stats = win.stats()
    assert stats["resets_total"] == 0 and stats["windows_discarded"] == 1
    assert stats["frames_in"] == 2


def test_stats_snapshot_is_a_copy():
    win = FrameWindow(clip_len=2, hop=1)
    snap = win.stats()
    push_n(win, 0, 2)
    assert snap["frames_in"] == 0 and win.stats()["frames_in"] == 2


def test_invalid_arguments_raise():
    with pytest.raises(ValueError):
        FrameWindow(clip_len=0)
    with pytest.raises(ValueError):
        FrameWindow(clip_len=2, frame_stride=0)
    with pytest.raises(ValueError):
        FrameWindow(clip_len=2, max_frame_gap=0)
    with pytest.raises(ValueError):
        FrameWindow(clip_len=2).push(frame(0), float("nan"))


# -- stamps and reset reasons (issue 11) ----------------------------------------------------------------------------


def test_stamp_to_ns_valid_stamps():
    from repflow_ros.frame_window import stamp_to_ns

    assert stamp_to_ns(0, 0) == 0
    assert stamp_to_ns(12, 999_999_999) == 12_999_999_999
    assert stamp_to_ns(1_700_000_000, 5) == 1_700_000_000_000_000_005


@pytest.mark.parametrize("sec,nanosec,word", [(1, 4_000_000_000, "nanosec"), (1, 1_000_000_000, "nanosec"),
                                              (1, -1, "nanosec"), (-3, 0, "negative sec")])
def test_stamp_to_ns_refuses_invalid_stamps(sec, nanosec, word):
    from repflow_ros.frame_window import BadStamp, stamp_to_ns

    with pytest.raises(BadStamp) as err:
        stamp_to_ns(sec, nanosec)
    assert err.value.cause == "bad_stamp" and word in str(err.value) and isinstance(err.value, ValueError)


def test_reset_results_carry_a_detail_with_the_numbers():
    win = FrameWindow(clip_len=2, hop=1, max_frame_gap=0.5)
    assert win.push(frame(0), 10.0).detail is None
    back = win.push(frame(1), 8.75)
    assert back.reason == "time_jump_backwards" and "1.250 s" in back.detail and "10.000 -> 8.750" in back.detail
    gap = win.push(frame(2), 9.75)
    assert gap.reason == "frame_gap" and "1.000 s" in gap.detail and "0.5" in gap.detail
    size = win.push(np.zeros((3, 5, 3), np.uint8), 9.8)
    assert size.reason == "size_change" and "(3, 5, 3)" in size.detail


def test_reset_reporter_logs_once_per_reason_and_new_reasons_too():
    from repflow_ros.frame_window import ResetReporter

    win = FrameWindow(clip_len=2, hop=1, max_frame_gap=0.5)
    rep = ResetReporter()
    lines = [rep.message(win.push(frame(0), t)) for t in (5.0, 4.0, 4.2, 4.0, 6.0, 6.1, 7.0, 6.8)]
    logged = [line for line in lines if line]
    assert len(logged) == 2, lines  # one backwards jump (of three) and one gap (of two)
    assert "time_jump_backwards" in logged[0] and "went back" in logged[0] and "window_resets_" in logged[0]
    assert "frame_gap" in logged[1]
    assert win.stats()["resets"] == {"time_jump_backwards": 3, "frame_gap": 2, "size_change": 0}
    rep.reset()
    assert rep.message(win.push(frame(0), 1.0)) is not None
