"""webui/drivers/peer_log.py: each peer's recent lines, bounded per peer and all together."""
from __future__ import annotations

import tracemalloc

from webui.drivers.monitor import Monitor
from webui.drivers.peer_log import PeerLog, redact

LINE = "parsed IKE_AUTH response 1 [ IDr AUTH N(MOBIKE_SUP) N(ADD_6_ADDR) N(TS_UNACCEPT) ]"


def test_a_peer_keeps_its_last_lines_oldest_first():
    book = PeerLog(lines=3)
    for n in range(5):
        book.add("hq", float(n), 1, 7, f"line {n}")
    assert [(l.at, l.level, l.ike, l.text) for l in book.lines("hq")] == \
        [(2.0, 1, 7, "line 2"), (3.0, 1, 7, "line 3"), (4.0, 1, 7, "line 4")]
    assert book.lines("branch") == []


def test_the_size_is_what_the_lines_take_and_forgetting_gives_it_back():
    book = PeerLog(lines=2)
    for n in range(10):
        book.add("hq", 1.0, 0, 1, "x" * 10)
    assert book.size == 2 * len("1.000\t0\t1\txxxxxxxxxx\n")
    book.forget("hq")
    assert book.size == 0 and book.lines("hq") == []


def test_levels_above_charons_control_level_are_never_stored():
    """charon logs keys as hex dumps at level 4: such a line never reaches the ring."""
    book = PeerLog()
    book.add("hq", 1.0, 4, 1, "key: => 29 bytes @ 0x55d0 0: 64 69 61 67  diag")
    book.add("hq", 1.0, 2, 1, "selecting proposal:")
    assert book.lines("hq") == []


def test_a_line_is_one_line_however_charon_wrote_it():
    book = PeerLog()
    book.add("hq", 1.0, 1, 1, "received draft-ietf-ipsec-nat-t-ike-02\n vendor ID\tand a tab")
    assert [l.text for l in book.lines("hq")] == ["received draft-ietf-ipsec-nat-t-ike-02  vendor "
                                                  "ID\tand a tab"]


def test_over_budget_the_peers_nobody_watches_are_cut_first():
    book = PeerLog(lines=100, idle_lines=5, budget=20_000)
    book.watch("watched")
    for n in range(100):
        for name in ("watched", "a", "b"):
            book.add(name, float(n), 1, 1, LINE)
    assert book.size <= 20_000
    assert len(book.lines("watched")) == 100, "the peer someone looks at keeps its whole ring"
    assert 1 <= len(book.lines("a")) <= 40 and book.lines("a")[-1].at == 99.0


def test_a_thousand_busy_peers_stay_within_the_budget_in_memory_too():
    """Memory flat however long it runs: the budget bounds the text, and what Python adds per
    peer (its dict entry, the ring object, a bytearray) stays small. Measured, not assumed."""
    book = PeerLog()
    tracemalloc.start()
    try:
        # Names and times made once, not per line: tracing every allocation is what costs here,
        # and the test's own throwaway strings and floats are not the book's memory.
        peers = [(f"peer-{peer}", peer + 1) for peer in range(1000)]
        for rounds in range(2):  # a day of rekeys, twice over: the same memory
            for n in range(100):
                at = 1_700_000_000.0 + n
                for name, ike in peers:
                    book.add(name, at, 1, ike, LINE)
            current, _ = tracemalloc.get_traced_memory()
            if rounds == 0:
                first = current
    finally:
        tracemalloc.stop()
    assert book.size <= book.budget
    assert current < 2.5 * book.budget, current
    assert abs(current - first) < 0.1 * book.budget, (first, current)


def test_redact_hides_a_key_as_typed_and_as_hex():
    key = "diagnosis-key-never-shown-4242"
    text = f"a {key} b {key.encode().hex()} c {key.encode().hex().upper()}"
    assert key not in redact(text, key) and key.encode().hex() not in redact(text, key).lower()
    assert redact("nothing here", key) == "nothing here" and redact("x", "") == "x"


def test_the_monitor_drops_high_levels_before_they_are_kept():
    monitor = Monitor("/nonexistent", session=None)
    monitor._log_line({"level": "4", "ikesa-name": "hq", "ikesa-uniqueid": "3",
                       "msg": "Sk_ai secret => 32 bytes @ 0x1"})
    monitor._log_line({"level": "1", "ikesa-name": "hq", "ikesa-uniqueid": "3",
                       "msg": "received packet: from 192.0.2.2[500] to 192.0.2.1[500] (36 bytes)"})
    assert [l.text for l in monitor.log_lines("hq")] == \
        ["received packet: from 192.0.2.2[500] to 192.0.2.1[500] (36 bytes)"]
    monitor.forget("hq")
    assert monitor.log_lines("hq") == []


def test_what_the_monitor_remembers_per_ike_sa_stays_bounded():
    """Rekeyed IKE SAs get new ids without an "initiating" line: every table is bounded alone."""
    monitor = Monitor("/nonexistent", session=None)
    for uid in range(1, 10_000):
        monitor._log_line({"level": "1", "ikesa-name": "hq", "ikesa-uniqueid": str(uid),
                           "msg": "scheduling rekeying in 13152s"})
    assert len(monitor._sa_peers) <= 4096
    assert len(monitor.log_lines("hq")) == 300
