"""The peer store: atomic, serialized, private, and refusing to guess at a broken file."""
from __future__ import annotations

import json
import multiprocessing
import os
import random
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from webui.peers import SCHEMA_VERSION, Peer
from webui.store import DuplicatePeer, PeerStore, StoreError

ROOT = Path(__file__).resolve().parents[2]


def peer(i: int, **kw) -> Peer:
    fields = dict(name=f"p{i}", local_ip="192.0.2.1", remote_gateway=f"gw{i}.example",
                  local_networks=("198.51.100.0/24",), remote_networks=(f"10.{i // 256}.{i % 256}.0/24",),
                  psk=f"secret-{i:08d}")
    fields.update(kw)
    return Peer(**fields)


def test_round_trip_and_mode(tmp_path):
    store = PeerStore(tmp_path / "peers.json")
    store.add(peer(1))
    assert stat.S_IMODE(os.stat(tmp_path / "peers.json").st_mode) == 0o600
    again = PeerStore(tmp_path / "peers.json")
    assert again.get("p1") == peer(1)
    doc = json.loads((tmp_path / "peers.json").read_text())
    assert doc["_meta"]["1"]["schema_version"] == 2
    with pytest.raises(DuplicatePeer):
        again.add(peer(1))


def test_replace_renames_and_delete_removes(tmp_path):
    store = PeerStore(tmp_path / "peers.json")
    store.add(peer(1))
    store.add(peer(2))
    store.replace("p1", peer(1, name="renamed", enabled=False))
    assert [p.name for p in store.all()] == ["p2", "renamed"]
    assert store.get("renamed").enabled is False
    with pytest.raises(DuplicatePeer):
        store.replace("renamed", peer(1, name="p2"))
    store.delete("p2")
    assert [p.name for p in PeerStore(tmp_path / "peers.json").all()] == ["renamed"]


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"_meta": {"1": {"schema_version": 99}}}'])
def test_broken_file_refuses_to_start_and_is_never_overwritten(tmp_path, content):
    path = tmp_path / "peers.json"
    path.write_bytes(content)
    with pytest.raises(StoreError) as e:
        PeerStore(path)
    assert str(path) in str(e.value)
    assert path.read_bytes() == content


def test_run_py_names_the_broken_file(tmp_path):
    (tmp_path / "peers.json").write_text("{")
    env = dict(os.environ, WEBUI_DATA_DIR=str(tmp_path), WEBUI_DRIVER="fake")
    result = subprocess.run([sys.executable, "run.py", "--no-lab", "--port", "0"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert str(tmp_path / "peers.json") in result.stderr
    assert (tmp_path / "peers.json").read_text() == "{"


def test_twenty_threads_adding_at_once_lose_none(tmp_path):
    store = PeerStore(tmp_path / "peers.json")
    start = threading.Barrier(20)
    errors = []

    def add_five(t):
        start.wait()
        try:
            for j in range(5):
                store.add(peer(t * 5 + j))
        except Exception as e:  # noqa: BLE001 - collected and asserted on below
            errors.append(e)

    threads = [threading.Thread(target=add_five, args=(t,)) for t in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(PeerStore(tmp_path / "peers.json").all()) == 100


def write_until_killed(path: str, first: int, progress) -> None:
    """The writer that is killed: adds peers (deleting every third) and reports each one done."""
    store = PeerStore(path)
    for i in range(first, first + 100000):
        store.add(Peer(name=f"p{i}", local_ip="192.0.2.1", remote_gateway="192.0.2.2",
                       local_networks=("198.51.100.0/24",), remote_networks=(f"10.{i // 256 % 256}.{i % 256}.0/24",),
                       psk="crash-test-secret"))
        if i % 3 == 0:
            store.delete(f"p{i}")
        progress.send(i)


def test_sigkill_at_random_moments_never_tears_the_file(tmp_path):
    """Kill a writer many times mid-stream: the file always parses and holds every acknowledged peer.
    Each writer is its own process, forked from one that imported the store once (a new
    interpreter per writer was most of this test's time)."""
    path = tmp_path / "peers.json"
    rng = random.Random(1234)
    acknowledged: set[int] = set()
    deleted: set[int] = set()
    next_index = 0
    processes = multiprocessing.get_context("forkserver")
    processes.set_forkserver_preload([__name__])
    for _ in range(25):
        ours, theirs = processes.Pipe(duplex=False)
        child = processes.Process(target=write_until_killed, args=(str(path), next_index, theirs))
        child.start()
        theirs.close()
        assert ours.poll(30), "writer died before its first write"
        done = [ours.recv()]  # it is writing now
        time.sleep(rng.uniform(0.0, 0.08))
        child.kill()
        child.join()
        while True:  # every peer it reported before it died
            try:
                done.append(ours.recv())
            except EOFError:
                break
        ours.close()
        for i in done:
            (deleted if i % 3 == 0 else acknowledged).add(i)
        doc = json.loads(path.read_bytes())  # must parse after every kill
        names = {p["name"] for p in doc["peers"].values()}
        missing = {f"p{i}" for i in acknowledged} - names
        assert not missing, f"acknowledged peers lost: {sorted(missing)[:5]}"
        assert not names & {f"p{i}" for i in deleted}
        next_index = max(acknowledged | deleted) + 2
    assert len(acknowledged) > 25
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) <= 25  # a temp file can be left by a kill; never the store itself


def test_a_failed_write_leaves_memory_and_file_as_they_were(tmp_path, monkeypatch):
    store = PeerStore(tmp_path / "peers.json")
    store.add(peer(1))
    before = (tmp_path / "peers.json").read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("webui.store.write_atomic", disk_full)
    with pytest.raises(OSError):
        store.add(peer(2))
    with pytest.raises(OSError):
        store.replace("p1", peer(1, name="renamed"))
    assert [p.name for p in store.all()] == ["p1"] and store.get("p2") is None
    assert (tmp_path / "peers.json").read_bytes() == before
    monkeypatch.undo()
    store.add(peer(3))
    assert [p.name for p in store.all()] == ["p1", "p3"]
    assert [p.name for p in PeerStore(tmp_path / "peers.json").all()] == ["p1", "p3"]


# --- Migration (issue 15) ------------------------------------------------------------------------

SCHEMA1 = Path(__file__).parent / "data" / "peers-schema1.json"  # written by the UI before issue 15


def test_a_store_from_before_the_advanced_options_migrates_to_todays_behaviour(tmp_path):
    from webui.drivers import vici_messages
    from webui.peers import ADVANCED_DEFAULTS
    path = tmp_path / "peers.json"
    original = SCHEMA1.read_bytes()
    path.write_bytes(original)
    old_records = json.loads(original)["peers"]

    store = PeerStore(path)
    peers = {p.name: p for p in store.all()}
    assert sorted(peers) == ["branch-v1", "hq"]
    # Every field it had is kept; every new one is what all peers did before it existed.
    for record in old_records.values():
        migrated = peers[record["name"]]
        assert migrated.to_record() == {**record, **ADVANCED_DEFAULTS}
        conn = vici_messages.load_conn(migrated)[migrated.name]
        assert conn["dpd_delay"] == "30s" and conn["rekey_time"] == "14400s"
        assert not {"encap", "mobike", "fragmentation", "aggressive"} & set(conn)
        # Issue 17: every IKEv2 SA reauthenticates now and then (IKEv1 does on each rekey).
        assert conn.get("reauth_time") == (vici_messages.REAUTH_TIME
                                           if migrated.ike_version == 2 else None)
        for child in conn["children"].values():
            assert (child["start_action"], child["dpd_action"], child["rekey_time"]) == (
                "start", "restart", "3600s")

    doc = json.loads(path.read_text())
    assert doc["_meta"]["1"]["schema_version"] == 2
    assert all(set(ADVANCED_DEFAULTS) <= set(r) for r in doc["peers"].values())
    assert (tmp_path / "peers.json.v1").read_bytes() == original  # the file as it was, kept
    assert stat.S_IMODE(os.stat(tmp_path / "peers.json.v1").st_mode) == 0o600
    assert PeerStore(path).all() == store.all()  # opening it again changes nothing
    assert json.loads(path.read_text()) == doc


def test_a_migrated_store_keeps_working(tmp_path):
    path = tmp_path / "peers.json"
    path.write_bytes(SCHEMA1.read_bytes())
    store = PeerStore(path)
    store.replace("hq", peer(1, name="hq", dpd_delay=0))
    store.add(peer(2))
    again = PeerStore(path)
    assert again.get("hq").dpd_delay == 0 and again.get("p2") == peer(2)
    assert again.get("branch-v1").psk == "old-store-psk-branch-02"


def test_an_empty_file_is_a_new_store(tmp_path):
    path = tmp_path / "peers.json"
    path.write_bytes(b"  \n")
    store = PeerStore(path)
    assert store.all() == []
    store.add(peer(1))
    assert PeerStore(path).all() == [peer(1)]


@pytest.mark.parametrize("content, words", [
    (b"{not json", ["is not valid JSON (", "it was left untouched. Restore it from a backup or "
                    "move it away."]),
    (b"[1, 2]", ["does not hold a peer database; it was left untouched."]),
    (b'{"_meta": {"1": {"schema_version": 99}}}',
     [f"has schema version 99; this version of the UI reads {SCHEMA_VERSION}. It was left "
      "untouched."]),
])
def test_a_broken_file_is_refused_in_words_that_say_what_to_do(tmp_path, content, words):
    path = tmp_path / "peers.json"
    path.write_bytes(content)
    with pytest.raises(StoreError) as refused:
        PeerStore(path)
    message = str(refused.value)
    assert message.startswith(f"{path} ")
    for expected in words:
        assert expected in message
    assert message.endswith(words[-1])


def test_a_store_left_readable_by_others_is_made_private_when_opened(tmp_path):
    path = tmp_path / "peers.json"
    PeerStore(path).add(peer(1))
    os.chmod(path, 0o644)
    assert PeerStore(path).get("p1") == peer(1)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_changing_a_peer_that_is_not_there_says_so_and_changes_nothing(tmp_path):
    from webui.store import PeerNotFound
    path = tmp_path / "peers.json"
    store = PeerStore(path)
    store.add(peer(1))
    before = path.read_bytes()
    with pytest.raises(PeerNotFound, match=r"^There is no peer named p2\.$"):
        store.replace("p2", peer(2))
    with pytest.raises(PeerNotFound, match=r"^There is no peer named p2\.$"):
        store.delete("p2")
    with pytest.raises(DuplicatePeer, match=r"^A peer named p1 already exists\.$"):
        store.add(peer(1, remote_gateway="other.example"))
    store.add(peer(3))
    before = path.read_bytes()
    with pytest.raises(DuplicatePeer, match=r"^A peer named p1 already exists\.$"):
        store.replace("p3", peer(3, name="p1"))
    assert path.read_bytes() == before and store.all() == [peer(1), peer(3)]


def test_peers_are_listed_by_name_whatever_the_case(tmp_path):
    store = PeerStore(tmp_path / "peers.json")
    for name in ("delta", "Bravo", "alpha", "Charlie"):
        store.add(peer(len(name), name=name))
    assert [p.name for p in store.all()] == ["alpha", "Bravo", "Charlie", "delta"]
    store.replace("alpha", peer(5, name="Echo"))
    assert [p.name for p in store.all()] == ["Bravo", "Charlie", "delta", "Echo"]
    assert [p.name for p in PeerStore(tmp_path / "peers.json").all()] == [
        "Bravo", "Charlie", "delta", "Echo"]


def test_each_change_is_logged_by_name_and_never_with_the_key(tmp_path, caplog):
    store = PeerStore(tmp_path / "peers.json")
    store.add(peer(1))
    store.replace("p1", peer(1, keying_retries=5))
    store.replace("p1", peer(1, name="renamed"))
    store.delete("renamed")
    lines = [r.getMessage() for r in caplog.records if r.name == "webui.store"]
    assert lines == ["peer p1 added", "peer p1 saved", "peer renamed saved (renamed from p1)",
                     "peer renamed deleted"]


def test_the_file_is_compact_and_its_keys_sorted(tmp_path):
    """Small on a router's flash, and two copies of it differ only where the peers do."""
    path = tmp_path / "peers.json"
    store = PeerStore(path)
    store.add(peer(2))
    store.add(peer(1))
    raw = path.read_text()
    assert raw == json.dumps(json.loads(raw), separators=(",", ":"), sort_keys=True)


def test_a_data_directory_that_does_not_exist_yet_is_made(tmp_path):
    path = tmp_path / "var" / "lib" / "webui" / "peers.json"
    PeerStore(path).add(peer(1))
    assert PeerStore(path).all() == [peer(1)]


def test_a_version_1_store_without_peers_opens_empty(tmp_path, caplog):
    path = tmp_path / "peers.json"
    path.write_text('{"_meta": {"1": {"schema_version": 1}}}')
    store = PeerStore(path)
    assert store.all() == []
    assert [r.getMessage() for r in caplog.records if r.name == "webui.store"] == [
        f"{path} migrated to schema version {SCHEMA_VERSION} (the previous file is kept as "
        "peers.json.v1)"]
    store.add(peer(1))
    assert PeerStore(path).all() == [peer(1)]


# --- A restore: every peer replaced at once; a file replaced by another writer ------------------

def test_a_restore_leaves_exactly_the_restored_peers_and_the_store_keeps_working(tmp_path, caplog):
    path = tmp_path / "peers.json"
    store = PeerStore(path)
    for i in (1, 2, 3, 4):
        store.add(peer(i))
    restored = [peer(7), peer(2, remote_gateway="moved.example"), peer(5, name="Alpha")]
    store.replace_all(restored)
    expected = [peer(5, name="Alpha"), peer(2, remote_gateway="moved.example"), peer(7)]
    assert store.all() == expected
    assert store.get("p1") is None and store.get("p7") == peer(7)
    assert PeerStore(path).all() == expected
    assert ["peers replaced: 3 stored"] == [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("peers replaced")]
    # Later changes count on from what is stored: a new peer overwrites none of the restored.
    store.add(peer(8))
    store.replace("p7", peer(7, name="p9"))
    store.delete("p2")
    after = [peer(5, name="Alpha"), peer(8), peer(7, name="p9")]
    assert store.all() == after and PeerStore(path).all() == after
    assert len(json.loads(path.read_text())["peers"]) == 3


def test_a_restore_with_two_peers_of_one_name_changes_nothing(tmp_path):
    path = tmp_path / "peers.json"
    store = PeerStore(path)
    store.add(peer(1))
    before = path.read_bytes()
    with pytest.raises(DuplicatePeer, match=r"^The peers to store have duplicate names\.$"):
        store.replace_all([peer(2), peer(3), peer(2, remote_gateway="other.example")])
    assert path.read_bytes() == before and store.all() == [peer(1)]
    store.replace_all([])
    assert store.all() == [] and PeerStore(path).all() == []


def test_a_file_replaced_by_another_writer_is_read_again_before_the_next_read_or_change(
        tmp_path, caplog):
    """`run.py restore` beside a running server: the server must not answer from, or save over,
    what it held before."""
    path = tmp_path / "peers.json"
    server = PeerStore(path)
    server.add(peer(1))
    assert server.all() == [peer(1)]
    PeerStore(path).replace_all([peer(2), peer(3)])  # another process's restore
    assert server.get("p1") is None and server.get("p2") == peer(2)
    assert [f"{path} changed on disk; reading it again"] == [
        r.getMessage() for r in caplog.records if "changed on disk" in r.getMessage()]
    for outside, change in ((12, lambda: server.add(peer(4))),
                            (13, lambda: server.replace("p3", peer(3, enabled=False))),
                            (14, lambda: server.delete("p2"))):
        PeerStore(path).add(peer(outside))  # yet another write from outside
        change()
    names = sorted(p.name for p in PeerStore(path).all())
    assert names == sorted(p.name for p in server.all()) == ["p12", "p13", "p14", "p3", "p4"]
    assert PeerStore(path).get("p3").enabled is False
    # Its own writes are not taken for someone else's: no reading again after them.
    caplog.clear()
    server.add(peer(20))
    server.all()
    assert not [r for r in caplog.records if "changed on disk" in r.getMessage()]
