"""The batch report's collector pause: the collector comes back as it was, and what the report
kept is promoted without being walked, so nothing is exempted from later collections."""

from __future__ import annotations

import gc
import threading

from wealthalloc.tax.report import gc_paused


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_the_collector_is_off_during_the_pause_and_back_after() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_overlapping_pauses_keep_it_off_until_the_last_ends() -> None:
    entered, release = threading.Event(), threading.Event()

    def other() -> None:
        with gc_paused():
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    with gc_paused():
        thread.start()
        entered.wait(5)
    assert not gc.isenabled()  # the other pause is still running
    release.set()
    thread.join(5)
    assert gc.isenabled()


def test_what_was_made_during_the_pause_is_promoted_not_frozen() -> None:
    with gc_paused():
        kept = [Node() for _ in range(50_000)]
        collections = gc.get_stats()[0]["collections"]
    assert gc.get_stats()[0]["collections"] == collections  # the 50,000 were not walked on the way out
    oldest = {id(item) for item in gc.get_objects(generation=2)}
    assert id(kept[0]) in oldest and id(kept[-1]) in oldest
    assert gc.get_freeze_count() == 0
    # A cycle made during a pause is still collected later.
    with gc_paused():
        first, second = Node(), Node()
        first.other, second.other = second, first
        probe = [first]
    del first, second, probe
    assert gc.collect() >= 2
    del kept
