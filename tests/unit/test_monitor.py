"""The monitor's snapshot (webui/drivers/monitor.py): states from SAs, versions, history, counters,
and its conversation with a fake charon; and the poll that answers 204 when nothing changed."""
import copy
import re
import struct
import time
from dataclasses import replace

import pytest

from tests.unit.test_vici_transport import EVENT, ListeningCharon, encode, frame
from webui.drivers import ChildSA, IkeSA, StateSnapshot, TunnelState
from webui.drivers import monitor as m
from webui.drivers import strongswan


def sa(name="branch", state="ESTABLISHED", established=60, children=(("INSTALLED", 10, 20),),
       local_ts=("198.51.100.0/24",), remote_ts=("203.0.113.0/24",)):
    return IkeSA(name=name, unique_id=1, state=state, version=2, established_for=established,
                 children=tuple(ChildSA(name=name, state=s, bytes_in=i, bytes_out=o,
                                        local_ts=local_ts, remote_ts=remote_ts)
                                for s, i, o in children))


def test_summarise_up_with_counters_networks_and_since():
    state = m.summarise("branch", [sa()], at=1000.0, previous=None)
    assert (state.state, state.bytes_in, state.bytes_out, state.up_since, state.since) == \
        ("up", 10, 20, 940.0, 1000.0)
    assert state.local_ts == ("198.51.100.0/24",)
    later = m.summarise("branch", [sa(established=64)], at=1005.4, previous=state)
    assert later == state, "the same SA a few seconds later: nothing changed"


def test_up_for_counts_on_across_a_rekey_and_from_the_tunnel_after_a_terminated_child():
    """Review 25: "up for" went back to 0 s on every Rekey IKE and Reauthenticate (the new IKE SA
    is seconds old) while History showed no drop; and after a terminated CHILD_SA was connected
    again it counted from the older IKE SA."""
    up = m.summarise("b", [sa(established=600)], at=1000.0, previous=None)
    assert up.up_since == 400.0
    rekeyed = m.summarise("b", [replace(sa(established=1), unique_id=2)], at=1010.0, previous=up)
    assert rekeyed.up_since == 400.0, "the same tunnel, new SAs"
    no_tunnel = m.summarise("b", [sa(established=620, children=())], at=1020.0, previous=rekeyed)
    assert no_tunnel.state == "ike-up"
    child = ChildSA(name="b", state="INSTALLED", installed_for=3, local_ts=("198.51.100.0/24",),
                    remote_ts=("203.0.113.0/24",))
    again = m.summarise("b", [replace(sa(established=640), children=(child,))], at=1040.0,
                        previous=no_tunnel)
    assert (again.state, again.up_since) == ("up", 1037.0), "up since the tunnel came in"


def test_summarise_ike_up_without_a_tunnel_is_not_up():
    assert m.summarise("b", [sa(children=())], 0.0, None).state == "ike-up"
    assert m.summarise("b", [sa(children=(("CREATED", 0, 0),))], 0.0, None).state == "ike-up"
    assert m.summarise("b", [sa(state="CONNECTING", children=())], 0.0, None).state == "connecting"
    assert m.summarise("b", [], 0.0, None).state == "down"


def test_a_reason_stays_until_the_tunnel_is_up():
    failed = TunnelState("b", "down", reason="authentication failed", reason_at=5.0, attempts=3)
    still = m.summarise("b", [sa(state="CONNECTING", children=())], 10.0, failed)
    assert (still.reason, still.attempts) == ("authentication failed", 3)
    up = m.summarise("b", [sa()], 20.0, still)
    assert (up.reason, up.attempts, up.ever_up) == ("", 0, True)


def test_history_is_bounded():
    monitor = m.Monitor("x", strongswan.session)
    for i in range(m.HISTORY + 30):
        monitor._update("b", lambda t, i=i: TunnelState("b", "up" if i % 2 else "down",
                                                       reason=f"r{i}"))
    history = monitor.history("b")
    assert len(history) == m.HISTORY and history[-1][3] == f"r{m.HISTORY + 29}"


def up_then(monitor, *steps, name="b"):
    """Bring `name` up through a listing, then apply each step: a list of SAs to list, or a
    callable to run on the monitor."""
    monitor._apply_sas({name: ()}, time.time(), whole=False)
    monitor._apply_sas({name: (sa(name),)}, time.time(), whole=False)
    for step in steps:
        if callable(step):
            step(monitor)
        else:
            monitor._apply_sas({name: tuple(step)}, time.time(), whole=False)
    return [(t.old, t.new, t.reason, t.asked) for t in monitor.history(name)]


def test_the_admins_own_actions_are_recorded_with_a_reason_and_marked_asked():
    rows = up_then(m.Monitor("x", strongswan.session),
                   lambda mo: mo.note_asked("b", m.REAUTHENTICATED), [],
                   [sa("b")],
                   lambda mo: mo.note_disconnected("b", m.CHILD_TERMINATED), [sa("b", children=())],
                   lambda mo: mo.note_connecting("b"), [sa("b")],
                   lambda mo: mo.note_disconnected("b"), [],
                   [sa("b", state="CONNECTING", children=())])  # the remote starts it again
    assert rows[1:] == [("up", "down", m.REAUTHENTICATED, "back"),
                        ("down", "up", "", ""),
                        ("up", "ike-up", m.CHILD_TERMINATED, "down"),
                        ("ike-up", "up", "", ""),
                        ("up", "down", m.DISCONNECTED, "down"),
                        ("down", "connecting", "", "")], \
        "no row from a state to itself; each drop the admin caused says so"


def test_a_drop_no_one_asked_for_is_not_put_down_to_the_admin():
    monitor = m.Monitor("x", strongswan.session)
    # an action refused by charon: the drop that follows is not the admin's
    rows = up_then(monitor, lambda mo: mo.note_asked("b", m.REKEYED),
                   lambda mo: mo.note_not_asked("b"), [])
    assert rows[-1] == ("up", "down", "", "")
    # an action long ago: its note has lapsed
    rows = up_then(monitor, lambda mo: mo.note_asked("b", m.REKEYED), name="c")
    monitor._asked["c"] = (m.REKEYED, "back", time.monotonic() - 1, frozenset())
    monitor._apply_sas({"c": ()}, time.time(), whole=False)
    assert monitor.history("c")[-1][1:] == ("up", "down", "", "")
    # a reload whose new SA came up before any listing saw a drop: the action is over, and
    # the remote's drop a moment later is a flap
    new = IkeSA(name="e", unique_id=2, state="ESTABLISHED", version=2, established_for=1,
                children=sa("e").children)
    rows = up_then(monitor, lambda mo: mo.note_asked("e", m.RELOADED, replacing=(1,)),
                   [new], [], name="e")
    assert rows[-1] == ("up", "down", "", "")
    # a Terminate charon refused: the tunnel is not down on purpose
    monitor.note_disconnected("d", m.CHILD_TERMINATED)
    monitor.note_not_asked("d")
    assert not monitor.snapshot(polled=False).tunnels["d"].disconnected


def test_a_new_charon_ends_every_tunnel_the_admins_restart_is_not_a_flap_a_crash_is(tmp_path):
    """The monitor's own thread against a fake charon that exits and is started anew on the same
    socket path (a new socket file, as charon binds it)."""
    import contextlib
    import socket
    path = tmp_path / "charon.vici"

    def start():
        fake = ListeningCharon(path)
        fake.replies.update({"get-conns": ([], {"conns": ["branch"]}),
                             "list-sas": ([("list-sa", {"branch": LIST_SA})], {})})
        return fake

    def exits(fake):
        fake.close()
        path.unlink()
        for served in fake.served:
            with contextlib.suppress(OSError):  # the queries' are closed already
                served.conn.shutdown(socket.SHUT_RDWR)

    def rows():
        return [(t.old, t.new, t.reason, t.asked) for t in monitor.history("branch")]

    def wait_for(check):
        deadline = time.monotonic() + 5
        while not check() and time.monotonic() < deadline:
            time.sleep(0.02)
        return check()

    charon = start()
    monitor = m.Monitor(str(path), strongswan.session, retry=0.05, tick=0.02)
    monitor.start()
    try:
        assert wait_for(lambda: monitor.snapshot().tunnels.get("branch", None) is not None
                        and monitor.snapshot().tunnels["branch"].state == "up")
        monitor.note_restart(m.RESTARTED, m._socket_identity(str(path)))
        exits(charon)
        charon = start()
        assert wait_for(lambda: len(rows()) == 2), rows()
        assert rows() == [("up", "down", m.RESTARTED, "back"), ("down", "up", "", "")]
        dropped = monitor.history("branch")[0].at
        assert dropped < monitor.history("branch")[1].at, "the drop is when the old one went"

        # a charon that exits with no restart asked for (a crash, systemd starting it again)
        exits(charon)
        charon = start()
        assert wait_for(lambda: len(rows()) == 4), rows()
        assert rows()[2:] == [("up", "down", m.CHARON_REPLACED, ""), ("down", "up", "", "")]

        # a note for a charon that is not the one replaced (the restart command failed and
        # took its note back, or a later charon): not the admin's
        monitor.note_restart(m.RESTARTED, (1, 2))
        exits(charon)
        charon = start()
        assert wait_for(lambda: len(rows()) == 6), rows()
        assert rows()[4] == ("up", "down", m.CHARON_REPLACED, "")
    finally:
        monitor.stop()
        charon.close()


def test_restart_ipsec_notes_the_charon_it_replaces_and_takes_it_back_when_the_command_fails(
        charon, tmp_path):
    driver = strongswan.ViciDriver(charon.path, data_dir=tmp_path, restart_command=["true"],
                                   restart_wait=0.2)
    driver._monitor = m.Monitor(str(charon.path), strongswan.session)  # not started: its notes
    driver.restart([])  # "restarted", but the same charon still answers: the wait says so
    assert driver._monitor._restart[:2] == (m.RESTARTED, m._socket_identity(str(charon.path)))
    driver.restart_command = ["false"]
    assert not driver.restart([])[0].ok
    assert driver._monitor._restart is None, "that charon was not replaced: its crash is a flap"


def test_a_reason_without_a_change_of_state_goes_to_the_change_into_that_state():
    monitor = m.Monitor("x", strongswan.session)
    monitor._apply_sas({"b": ()}, time.time(), whole=False)
    monitor._apply_sas({"b": (sa(state="CONNECTING", children=()),)}, time.time(), whole=False)
    monitor.note_reason("b", "authentication failed")
    monitor.note_reason("b", "peer not responding")  # the row has its reason already
    assert [(t.old, t.new, t.reason) for t in monitor.history("b")] == \
        [("down", "connecting", "authentication failed")]


def test_counter_ring_keeps_the_last_samples_in_order():
    ring = m.CounterRing()
    for i in range(m.SAMPLES + 5):
        ring.add(float(i), i * 10, i * 20)
    samples = ring.samples()
    assert len(samples) == m.SAMPLES
    assert samples[0] == (5.0, 50, 100) and samples[-1] == (float(m.SAMPLES + 4),
                                                             (m.SAMPLES + 4) * 10,
                                                             (m.SAMPLES + 4) * 20)


LIST_SA = {"uniqueid": "1", "version": "2", "state": "ESTABLISHED", "established": "7",
           "child-sas": {"branch-1": {"name": "branch", "state": "INSTALLED", "bytes-in": "10",
                                      "bytes-out": "20", "local-ts": ["198.51.100.0/24"],
                                      "remote-ts": ["203.0.113.0/24"]}}}


@pytest.fixture
def charon(tmp_path):
    fake = ListeningCharon(tmp_path / "charon.vici")
    fake.replies.update({"get-conns": ([], {"conns": ["branch"]}),
                         "list-sas": ([("list-sa", {"branch": LIST_SA})], {})})
    yield fake
    fake.close()


def event(kind: str, message: dict) -> bytes:
    return bytes([EVENT, len(kind)]) + kind.encode() + encode(message)


def test_sync_fills_the_snapshot_and_each_change_grows_the_version(charon):
    monitor = m.Monitor(str(charon.path), strongswan.session)
    monitor.sync()
    snap = monitor.snapshot()
    assert snap.tunnels["branch"].state == "up" and snap.loaded == {"branch"}
    assert snap.confirmed_at and not snap.problem
    monitor.sync()
    assert monitor.snapshot().version == snap.version, "nothing changed: same version"

    charon.replies["list-sas"] = ([], {})  # the tunnel went down; charon says so in an event
    monitor._handle(event("ike-updown", {"branch": {"state": "DELETING"}}))
    monitor._periodic()
    after = monitor.snapshot()
    assert after.tunnels["branch"].state == "down" and after.version > snap.version
    assert [(t.old, t.new) for t in monitor.history("branch")] == [("up", "down")]


def test_a_failure_in_the_log_is_the_reason_with_its_direction(charon):
    monitor = m.Monitor(str(charon.path), strongswan.session)
    monitor._handle(event("log", {"ikesa-name": "branch", "ikesa-uniqueid": "4",
                                  "msg": "initiating IKE_SA branch[4] to 192.0.2.2"}))
    monitor._handle(event("log", {"ikesa-name": "branch", "ikesa-uniqueid": "4",
                                  "msg": "received AUTHENTICATION_FAILED notify error"}))
    state = monitor.snapshot().tunnels["branch"]
    assert (state.reason, state.direction, state.attempts) == (
        "authentication failed: the remote refused it (the keys differ, or it expects other IDs)",
        "we", 1)
    monitor._handle(event("log", {"ikesa-name": "", "ikesa-uniqueid": "5",
                                  "msg": "192.0.2.2 is initiating an IKE_SA"}))
    monitor._handle(event("log", {"ikesa-name": "branch", "ikesa-uniqueid": "5",
                                  "msg": "received NO_PROPOSAL_CHOSEN notify error"}))
    assert monitor.snapshot().tunnels["branch"].direction == "192.0.2.2"


def test_charon_not_answering_is_said_with_since_when(charon, tmp_path):
    monitor = m.Monitor(str(charon.path), strongswan.session, query_timeout=0.3)
    monitor.sync()
    confirmed = monitor.snapshot().confirmed_at
    charon.replies["get-conns"] = struct.pack("!I", 100)  # half a header, then silence
    monitor._checked_at = 0
    monitor._periodic()
    snap = monitor.snapshot()
    assert snap.unanswered_since == confirmed
    assert snap.problem.startswith("strongSwan has not answered since ")
    assert "did not answer within 0.3 s" in snap.problem


def test_missing_connections_are_reported(charon):
    missing = []
    monitor = m.Monitor(str(charon.path), strongswan.session, expected=lambda: {"branch", "gone"},
                        on_missing=missing.extend)
    monitor._check_loaded()
    assert missing == ["gone"]


def test_a_poll_with_the_current_version_gets_204(browser, app):
    first = browser.get("/peers/states", htmx=True)
    assert first.status_code == 200
    key = re.search(r'id="states-version" hidden hx-swap-oob="true"><input type="hidden" name="v" '
                    r'value="([^"]*)"', first.get_data(as_text=True))
    assert key and key.group(1)
    again = browser.get(f"/peers/states?v={key.group(1)}", htmx=True)
    assert again.status_code == 204 and again.get_data() == b""
    assert browser.get("/peers/states?v=stale", htmx=True).status_code == 200


def test_the_table_sends_its_version_with_each_poll(browser, app):
    from tests.conftest import valid_peer_form
    assert browser.post("/peers", valid_peer_form(), htmx=True).status_code == 204
    page = browser.get("/").get_data(as_text=True)
    assert 'hx-include="#states-version"' in page and 'id="states-version"' in page


def test_a_change_makes_the_next_poll_render(browser, app):
    from tests.conftest import valid_peer_form
    key = re.search(r'name="v" value="([^"]*)"',
                    browser.get("/peers/states", htmx=True).get_data(as_text=True)).group(1)
    assert browser.post("/peers", valid_peer_form(), htmx=True).status_code == 204
    assert browser.get(f"/peers/states?v={key}", htmx=True).status_code == 200


def test_a_tunnel_charon_gave_up_on_is_retried_with_a_doubling_backoff():
    tried = []
    monitor = m.Monitor("x", strongswan.session, expected=lambda: {"branch"},
                        meant_up=lambda name, tunnel: True, initiate=tried.append,
                        backoff=10, backoff_max=25)
    monitor._update("branch", lambda t: TunnelState("branch", "down", reason="authentication failed"))
    clock = [1000.0]
    real_time = m.time.time
    m.time.time = lambda: clock[0]
    try:
        def scan(at):
            clock[0] = at
            monitor._scanned = 0
            monitor._retry_given_up()
            return monitor.snapshot(polled=False).tunnels["branch"].retry_at

        assert scan(1000) == 1010 and tried == []
        assert scan(1010) == 0 and tried == ["branch"]  # due: initiated, the wait doubles
        assert scan(1011) == 1031
        assert scan(1031) == 0 and len(tried) == 2
        assert scan(1032) == 1032 + 25, "doubling stops at the maximum"
        monitor.note_disconnected("branch")
        assert scan(1100) == 0 and len(tried) == 2, "a Disconnect stops the retries"
    finally:
        m.time.time = real_time


def test_a_duplicate_ike_sa_is_closed_after_the_grace_keeping_the_newest(charon):
    def two(older, newer):
        return {"branch": [dict(LIST_SA, uniqueid="1", established=str(older)),
                           dict(LIST_SA, uniqueid="2", established=str(newer))]}

    closed = []
    monitor = m.Monitor(str(charon.path), strongswan.session,
                        close=lambda name, unique_id: closed.append((name, unique_id)))
    monitor._apply_sas({"branch": (sa(),)}, time.time(), whole=True)
    monitor._close_duplicates()
    assert not monitor._duplicated and closed == []
    sas = m.vm.parse_sas([{"branch": s} for s in two(40, 5)["branch"]])
    monitor._apply_sas({"branch": sas}, time.time(), whole=False)
    monitor._close_duplicates()
    assert closed == [], "within the grace (a reauthentication overlaps like this): left alone"
    monitor._duplicated["branch"] -= m.DUPLICATE_GRACE
    charon.replies["list-sas"] = ([("list-sa", {"branch": s}) for s in two(70, 35)["branch"]], {})
    monitor._close_duplicates()
    assert closed == [("branch", 1)], "the older closed, the newer kept"
    monitor._apply_sas({"branch": (sa(),)}, time.time(), whole=False)
    assert not monitor._duplicated


def test_a_full_listing_gives_the_memory_it_freed_back_and_a_filtered_one_does_not(charon, monkeypatch):
    trimmed = []
    monkeypatch.setattr(m, "give_back_memory", lambda: trimmed.append(True))
    monitor = m.Monitor(str(charon.path), strongswan.session)
    monitor.sync()
    assert trimmed == [True]
    # one connection's SAs after an event: nothing big was freed
    monitor._refresh({"branch"}, monitor._next_listing())
    assert trimmed == [True]


def test_giving_memory_back_without_glibc_does_nothing(monkeypatch):
    monkeypatch.setattr(m, "_malloc_trim", False)  # musl: no malloc_trim
    m.give_back_memory()
    monkeypatch.setattr(m, "_malloc_trim", None)
    m.give_back_memory()  # looked up here (glibc on this machine) and called
    assert m._malloc_trim


# charon's line when the remote's DELETE for the IKE SA arrives (the lab router's log:
# "10:40:49 01[IKE] received DELETE for IKE_SA site-b[19]"; VICI's log event has no prefix)
REMOTE_DELETE = "received DELETE for IKE_SA b[1]"


def test_the_remotes_delete_ends_the_admins_pending_note_and_is_the_drops_reason():
    monitor = m.Monitor("x", strongswan.session)
    rows = up_then(monitor, lambda mo: mo.note_asked("b", m.REAUTHENTICATED, replacing=(1,)),
                   lambda mo: mo._handle(event("log", {"ikesa-name": "b", "ikesa-uniqueid": "1",
                                                       "msg": REMOTE_DELETE})),
                   [])
    assert rows[-1] == ("up", "down", m.CLOSED_BY_REMOTE, ""), "a flap, with the remote's reason"
    assert monitor.snapshot().tunnels["b"].reason == m.CLOSED_BY_REMOTE
    # a DELETE of an IKE SA the tunnel does not depend on (a replaced one): no row, and the
    # reason goes with the next listing that finds it up
    rows = up_then(monitor, lambda mo: mo._handle(event("log", {
        "ikesa-name": "c", "ikesa-uniqueid": "1", "msg": "received DELETE for IKE_SA c[1]"})),
        [sa("c")], name="c")
    assert rows == [("down", "up", "", "")] and monitor.snapshot().tunnels["c"].reason == ""
    # the remote's rekey: its new IKE SA is listed before the DELETE of the old one comes
    new = IkeSA(name="e", unique_id=2, state="ESTABLISHED", version=2, established_for=1,
                children=sa("e").children)
    rows = up_then(monitor, lambda mo: mo.note_asked("e", m.REKEYED), [sa("e"), new],
                   lambda mo: mo._handle(event("log", {
                       "ikesa-name": "e", "ikesa-uniqueid": "1",
                       "msg": "received DELETE for IKE_SA e[1]"})), name="e")
    assert monitor.snapshot().tunnels["e"].reason == "" and "e" in monitor._asked
    # this end's own delete is not the remote's
    rows = up_then(monitor, lambda mo: mo.note_asked("d", m.REAUTHENTICATED),
                   lambda mo: mo._handle(event("log", {
                       "ikesa-name": "d", "ikesa-uniqueid": "1",
                       "msg": "deleting IKE_SA d[1] between 192.0.2.1[a]...192.0.2.2[b]"})),
                   [], name="d")
    assert rows[-1] == ("up", "down", m.REAUTHENTICATED, "back")


def test_the_remotes_delete_logged_after_the_drop_was_listed_still_makes_it_the_remotes():
    """charon queues log lines for VICI but raises ike-updown at once: the lab saw the listing
    of the drop come first (2 runs in 8), which took the pending note."""
    monitor = m.Monitor("x", strongswan.session)
    delete = lambda name: lambda mo: mo._handle(event("log", {  # noqa: E731
        "ikesa-name": name, "ikesa-uniqueid": "1", "msg": f"received DELETE for IKE_SA {name}[1]"}))
    rows = up_then(monitor, lambda mo: mo.note_asked("b", m.REAUTHENTICATED), [], delete("b"))
    assert rows[-1] == ("up", "down", m.CLOSED_BY_REMOTE, "")
    # a drop listed longer ago than a log line trails its event: the admin's, left as it was
    up_then(monitor, lambda mo: mo.note_asked("c", m.REAUTHENTICATED), [], name="c")
    history = monitor._history["c"]
    history[-1] = history[-1]._replace(at=time.time() - m.LATE_LOG - 1)
    delete("c")(monitor)
    assert monitor.history("c")[-1][1:] == ("up", "down", m.REAUTHENTICATED, "back")
    # a Disconnect is over when charon answers it: never rewritten
    rows = up_then(monitor, lambda mo: mo.note_disconnected("d"), [], delete("d"), name="d")
    assert rows[-1] == ("up", "down", m.DISCONNECTED, "down")


def test_an_action_not_seen_done_in_settles_time_lapses_soon_after(monkeypatch):
    monitor = m.Monitor("x", strongswan.session)
    rows = up_then(monitor, lambda mo: mo.note_asked("b", m.REAUTHENTICATED),
                   lambda mo: mo.note_late("b"))
    assert rows and monitor._asked["b"][2] <= time.monotonic() + m.ASKED_LATE
    monkeypatch.setattr(m, "ASKED_LATE", 0.0)
    monitor.note_late("b")
    time.sleep(0.01)
    monitor._apply_sas({"b": ()}, time.time(), whole=False)
    assert monitor.history("b")[-1][1:] == ("up", "down", "", ""), "a drop after it: a flap"
    monitor.note_late("gone")  # no note: nothing to shorten
    assert "gone" not in monitor._asked


def test_the_driver_shortens_the_note_of_a_reauthentication_it_did_not_see_done(
        charon, tmp_path, monkeypatch):
    driver = strongswan.ViciDriver(charon.path, data_dir=tmp_path)
    driver._monitor = monitor = m.Monitor(str(charon.path), strongswan.session)  # not started
    monkeypatch.setattr(monitor, "settle", lambda name, until=None, timeout=3.0: False)
    charon.replies["rekey"] = ([], {"success": "yes"})
    answer = driver.reauthenticate("branch", 1)
    assert answer.endswith(strongswan.STILL_AT_IT), answer
    assert monitor._asked["branch"][:2] == (m.REAUTHENTICATED, "back")
    assert monitor._asked["branch"][2] <= time.monotonic() + m.ASKED_LATE, "not 20 s"


def test_an_sa_a_noblock_listing_leaves_out_is_asked_again_before_it_counts_as_down(charon, monkeypatch):
    """charon's list-sas with noblock skips an IKE SA in use at that moment (a rekey, a DPD): it
    is missing from the answer, not gone. Seen in the lab as false up -> down rows."""
    monitor = m.Monitor(str(charon.path), strongswan.session)
    monitor.sync()
    assert monitor.snapshot().tunnels["branch"].state == "up"
    before = list(monitor.history("branch"))
    real, asked = monitor._query_sas, []

    def busy(query, vs=None):  # the SA is checked out: noblock leaves it out, a waiting one has it
        asked.append(dict(query))
        return {} if query.get("noblock") else real(query, vs)
    monkeypatch.setattr(monitor, "_query_sas", busy)
    monitor.sync()
    monitor._refresh({"branch"}, monitor._next_listing())
    assert monitor.snapshot().tunnels["branch"].state == "up"
    assert list(monitor.history("branch")) == before, "no false drop recorded"
    assert {"ike": "branch"} in asked, "asked again without noblock"

    charon.replies["list-sas"] = ([], {})  # really gone: both answers lack it
    monitor._refresh({"branch"}, monitor._next_listing())
    assert monitor.snapshot().tunnels["branch"].state == "down"
    assert [t.new for t in monitor.history("branch")][-1:] == ["down"]

    monitor.sync()
    monkeypatch.setattr(monitor, "_query_sas", lambda query, vs=None: {})
    many = {f"p{i}": monitor._sas.get("branch") or (object(),) for i in range(m.CONFIRM_AT_MOST + 1)}
    monitor._sas = many
    asked.clear()
    assert monitor._list_sas() == {}, "a storm of drops is not asked again one by one"


def test_a_full_listing_asks_get_conns_and_list_sas_on_one_connection(charon):
    """Each period while a page polls: one connection to charon, not one per question."""
    monitor = m.Monitor(str(charon.path), strongswan.session)
    before = len(charon.served)
    monitor.sync()
    assert [c.commands for c in charon.served[before:]] == [["get-conns", "list-sas"]]


def listening_with_branch(charon) -> m.Monitor:
    """A monitor running on `charon` with a 30 s tick, listening, its first listing in."""
    monitor = m.Monitor(str(charon.path), strongswan.session, tick=30.0)
    monitor.start()
    if not monitor.listening.wait(5):
        monitor.stop()
        raise AssertionError("the monitor did not start listening within 5 s")
    deadline = time.monotonic() + 5
    while monitor.snapshot().tunnels.get("branch") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return monitor


def test_a_request_for_a_listing_wakes_the_listener_at_once_not_at_its_next_tick(charon):
    """settle() after the admin's Connect waits for a listing: the listener sleeps in select()
    between events and timers (its tick), and a request thread's wake must end that sleep."""
    monitor = listening_with_branch(charon)
    try:
        time.sleep(0.1)  # the listener is in its select() now, for up to 30 s
        started = time.monotonic()
        assert monitor.settle("branch", timeout=5.0)
        assert time.monotonic() - started < 1.0, "woken by the request, not by the tick"
    finally:
        started = time.monotonic()
        monitor.stop()
        assert not monitor.is_alive() and time.monotonic() - started < 2.0, "stop wakes it too"


def test_events_that_arrive_in_one_go_are_all_handled_at_once(charon):
    """The transport reads what the socket has: a burst's later events wait in its buffer, where
    the listener's select() cannot see them; they must not wait for the tick."""
    monitor = listening_with_branch(charon)
    try:
        listener = next(c for c in charon.served if not c.commands)  # registered, asked nothing
        lines = [f"line {i} of a burst" for i in range(5)]
        listener.conn.sendall(b"".join(
            frame(event("log", {"ikesa-name": "branch", "ikesa-uniqueid": "1", "level": "1",
                                "msg": line})) for line in lines))
        deadline = time.monotonic() + 1.0
        while len(monitor.log_lines("branch")) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [line.text for line in monitor.log_lines("branch")] == lines
    finally:
        monitor.stop()


def test_listings_that_find_nothing_changed_stretch_the_period_until_something_moves(charon):
    monitor = m.Monitor(str(charon.path), strongswan.session, sync_period=5.0)
    monitor.sync()
    periods = []
    for _ in range(4):
        monitor.sync()  # the same answer: nothing moved
        periods.append(monitor._period)
    assert periods == [10.0, 20.0, 20.0, 20.0]
    assert m.QUIET_STRETCH * 5.0 == 20.0

    moved = copy.deepcopy(LIST_SA)
    moved["child-sas"]["branch-1"]["bytes-in"] = "5000"  # traffic: the counters are news
    charon.replies["list-sas"] = ([("list-sa", {"branch": moved})], {})
    monitor.sync()
    assert monitor._period == 5.0
    monitor.sync()
    assert monitor._period == 10.0
    monitor._handle(event("child-rekey", {"branch": {}}))  # an SA event: back to one period
    assert monitor._period == 5.0

    monitor.sync(), monitor.sync()
    monitor._polled_at = time.monotonic() - 60  # a page opens after a quiet spell
    monitor.snapshot()
    assert monitor._period == 5.0


def test_down_since_stays_where_it_went_down_through_failed_attempts():
    """A wrong key: charon tries, fails, the monitor retries every 30 s. "down since" is when
    the tunnel stopped being up, not the last attempt (a fresh-eyes review saw it move)."""
    from webui.drivers import vici_messages as vm
    up = m.summarise("b", [vm.parse_ike_sa("b", LIST_SA)], 1000.0, None)
    down = m.summarise("b", [], 1010.0, up)
    trying = m.summarise("b", [vm.parse_ike_sa("b", {**LIST_SA, "state": "CONNECTING",
                                                     "child-sas": {}})], 1040.0, down)
    again = m.summarise("b", [], 1045.0, trying)
    assert (down.down_since, trying.down_since, again.down_since) == (1010.0, 1010.0, 1010.0)
    assert again.since == 1045.0, "the state's own since still says when it last changed"
    assert m.summarise("b", [vm.parse_ike_sa("b", LIST_SA)], 1100.0, again).down_since == 0.0
    first = m.summarise("c", [], 2000.0, m.TunnelState(name="c", state="down", since=1990.0))
    assert first.down_since == 1990.0, "never up: down since it was first seen"


def test_as_of_is_when_the_shown_sas_were_listed_not_the_last_check_that_charon_answers():
    """get-conns every period confirms charon answers, and lists no SA: "as of" that time
    claimed counters read earlier (a fresh-eyes review: 0 B "as of" a time after its pings)."""
    assert StateSnapshot(confirmed_at=200.0, listed_at={"a": 100.0, "b": 150.0}).as_of == 100.0
    assert StateSnapshot(confirmed_at=200.0).as_of == 200.0
