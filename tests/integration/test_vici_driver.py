"""ViciDriver against the lab router's real charon, with the remote charon as the other end."""
import time
from dataclasses import replace

import pytest

from tests.integration.conftest import wait_for
from webui.drivers import CommandFailed, DaemonUnavailable
from webui.drivers import strongswan
from tests.lab import LANHOST, REMOTE_LAN, REMOTE_WAN, ROUTER_LAN, ROUTER_WAN
from webui.peers import Peer


def make_peer(name="branch", **kw) -> Peer:
    base = dict(local_ip=ROUTER_WAN, remote_gateway=REMOTE_WAN,
                local_networks=("198.51.100.0/24",), remote_networks=("203.0.113.0/24",),
                psk="lab-psk-0123456789", keying_retries=1)
    return Peer(name=name, **{**base, **kw})


@pytest.fixture
def driver(clean_lab, tmp_path):
    the_driver = strongswan.ViciDriver(clean_lab.router_vici, data_dir=tmp_path,
                                       restart_command=clean_lab.restart_command,
                                       connect_timeout=5)
    assert the_driver.watch(), "the failure watcher did not start listening"
    yield the_driver
    the_driver.close()


def state_of(driver, name):
    return driver.tunnel_states().get(name)


def wait_up(driver, name, timeout=10.0):
    state = wait_for(lambda: (s := state_of(driver, name)) and s.state == "up" and s, timeout)
    assert state, f"{name} not up: {state_of(driver, name)}"
    # status() reads the monitor's snapshot, which hears of it by event a moment later
    assert wait_for(lambda: (t := driver.snapshot().tunnels.get(name)) and t.state == "up", 5)
    return state


def child_of(driver, name):
    sas = [sa for sa in driver.status().sas if sa.name == name and sa.state == "ESTABLISHED"]
    return next((c for sa in sas for c in sa.children if c.state == "INSTALLED"), None)


@pytest.mark.parametrize("version", [2, 1])
def test_a_tunnel_comes_up_and_carries_traffic(driver, clean_lab, version):
    peer = make_peer(f"ikev{version}", ike_version=version)
    clean_lab.load_remote_mirror(peer)
    started = time.monotonic()
    driver.apply(peer)  # start_action=start: charon brings it up without a Connect
    before = wait_up(driver, peer.name)
    print(f"\nIKEv{version} tunnel up {time.monotonic() - started:.3f} s after apply")
    (sa,) = [sa for sa in driver.status().sas if sa.name == peer.name]
    assert (sa.state, sa.version, sa.remote_host) == ("ESTABLISHED", version, REMOTE_WAN)
    assert child_of(driver, peer.name).remote_ts == ("203.0.113.0/24",)

    assert clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN)
    assert clean_lab.ping("lanhost", LANHOST, REMOTE_LAN)  # forwarded by the router, too
    after = state_of(driver, peer.name)
    assert after.bytes_out > before.bytes_out and after.bytes_in > before.bytes_in


def test_disconnect_and_connect(driver, clean_lab):
    peer = make_peer()
    clean_lab.load_remote_mirror(peer)
    driver.apply(peer)
    wait_up(driver, peer.name)
    assert driver.connect(peer.name) == "branch is already up."
    assert driver.disconnect(peer.name) == "branch is disconnected."
    assert state_of(driver, peer.name).state == "down"
    assert not clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN, count=1)
    assert driver.disconnect(peer.name) == "branch was not connected."
    assert driver.connect(peer.name) == "branch is up."
    assert clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN)


@pytest.mark.parametrize("version", [2, 1])
def test_a_wrong_psk_is_down_with_the_reason(driver, clean_lab, version):
    peer = make_peer(f"wrongkey{version}", ike_version=version)
    clean_lab.load_remote_mirror(peer, psk="not-the-same-psk")
    driver.apply(peer)  # charon starts it by itself: the watcher must catch why it failed
    state = wait_for(lambda: "authentication failed" in state_of(driver, peer.name).reason
                     and state_of(driver, peer.name))
    assert state and state.state != "up", state_of(driver, peer.name)
    assert "authentication failed" in state.reason


def test_connect_with_a_wrong_psk_says_authentication_failed(driver, clean_lab):
    peer = make_peer(keying_retries=1)
    clean_lab.load_remote_mirror(peer, psk="not-the-same-psk")
    driver.apply(replace(peer, enabled=False))  # loaded by nobody: only Connect tries
    driver.apply(peer)
    driver.disconnect(peer.name)
    outcome = driver.connect(peer.name)
    assert outcome == ("branch did not come up: authentication failed: the remote refused it (the "
                       "keys differ, or it expects other IDs).")
    assert "lab-psk" not in outcome


def test_editing_networks_renegotiates_with_the_new_selectors(driver, clean_lab):
    peer = make_peer()
    clean_lab.load_remote_mirror(peer)
    driver.apply(peer)
    wait_up(driver, peer.name)
    edited = replace(peer, local_networks=("198.51.100.0/25",))
    clean_lab.load_remote_mirror(edited)
    driver.apply(edited)
    child = wait_for(lambda: (c := child_of(driver, peer.name))
                     and c.local_ts == ("198.51.100.0/25",) and c)
    assert child, child_of(driver, peer.name)
    assert clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN)  # .1 is inside the /25


def test_rename_and_remove_unload(driver, clean_lab):
    peer = make_peer("old-name")
    clean_lab.load_remote_mirror(peer)
    driver.apply(peer)
    wait_up(driver, peer.name)
    renamed = replace(peer, name="new-name")
    clean_lab.load_remote_mirror(renamed)
    driver.apply(renamed, previous_name="old-name")
    names = {c.name for c in driver.status().connections}
    assert "new-name" in names and "old-name" not in names
    wait_up(driver, "new-name")
    assert "old-name" not in {sa.name for sa in driver.status().sas}

    driver.remove("new-name")
    assert "new-name" not in {c.name for c in driver.status().connections}
    # its SAs are ended without waiting (terminate, timeout -1): gone once charon has deleted them
    assert wait_for(lambda: "new-name" not in {sa.name for sa in driver.status().sas}), driver.status().sas
    assert driver._managed == set()


def test_reconcile_leaves_external_connections_alone(driver, clean_lab):
    keep, dropped = make_peer("keep"), make_peer("dropped", remote_networks=("203.0.113.0/25",))
    for peer in (keep, dropped):
        driver.apply(replace(peer, enabled=False) if peer is dropped else peer)
    driver.apply(dropped)
    external = make_peer("from-swanctl", remote_networks=("203.0.113.128/25",))
    strongswan.call(clean_lab.router_vici, "load-conn",
                    {"from-swanctl": {"remote_addrs": [REMOTE_WAN],
                                      "children": {"from-swanctl": {}}}})
    steps = driver.reconcile([keep])
    assert all(step.ok for step in steps), steps
    assert [s.what for s in steps] == ["Load 1 of 1 enabled peer(s)", "Unload dropped",
                                       "Leave connections not made by this UI alone"]
    assert steps[-1].detail == external.name
    managed = {c.name: c.managed for c in driver.status().connections}
    assert managed == {"keep": True, "from-swanctl": False}


def test_charon_refusal_names_the_field(driver, clean_lab):
    with pytest.raises(CommandFailed) as err:
        # not in the catalogue, so only charon can refuse it
        driver.apply(make_peer(esp_encryption=("aes999",), esp_integrity=("sha256",)))
    assert err.value.field == "esp_encryption"
    assert "esp_proposals" in str(err.value)


def test_supported_algorithms_come_from_charon(driver):
    supported = driver.supported_algorithms()
    assert {"aes256gcm16", "aes256", "sha256", "curve25519", "modp2048", "none"} <= supported


def test_restart_really_restarts_and_reloads(driver, clean_lab):
    peer = make_peer()
    clean_lab.load_remote_mirror(peer)
    driver.apply(peer)
    wait_up(driver, peer.name)
    pid_before = (clean_lab.workdir / "router.pid").read_text()
    steps = driver.restart([peer])
    assert all(step.ok for step in steps), steps
    assert (clean_lab.workdir / "router.pid").read_text() != pid_before
    assert [s.what.split()[0] for s in steps] == ["Run", "Wait", "Load"]
    wait_up(driver, peer.name)
    assert clean_lab.ping("router", ROUTER_LAN, REMOTE_LAN)


def test_charon_killed_is_unavailable_then_applied_when_back(driver, clean_lab):
    peer = make_peer()
    clean_lab.load_remote_mirror(peer)
    clean_lab.stop_router_charon()
    expected = f"strongSwan is not running (no VICI socket at {clean_lab.router_vici})."
    for action in (driver.tunnel_states, lambda: driver.apply(peer),
                   lambda: driver.connect(peer.name)):
        with pytest.raises(DaemonUnavailable) as err:
            action()
        assert str(err.value) == expected
    # The status pane reads the monitor's snapshot: it says so as soon as the monitor has seen it.
    assert wait_for(lambda: expected in driver.snapshot().problem, timeout=5)
    with pytest.raises(DaemonUnavailable) as err:
        driver.status()
    # "strongSwan has not answered since HH:MM:SS: " first, if the monitor had heard from it
    assert str(err.value).endswith(expected)
    clean_lab.start_router_charon()
    assert all(step.ok for step in driver.reconcile([peer]))
    wait_up(driver, peer.name)


def test_fifty_peers(driver, clean_lab):
    # Distinct IDs so each peer is its own IKE_SA (equal IKE configs would share one, and the
    # remote would judge every CHILD_SA against the first peer's networks), as 50 real sites are.
    peers = [make_peer(f"site{i:02d}", remote_networks=(f"10.77.{i}.0/24",),
                       local_id=f"hq-for-{i}.example", peer_id=f"site{i}.example")
             for i in range(50)]
    # libipsec routes each tunnel from an address inside its local network: give the remote one
    batch = "".join(f"address add 10.77.{i}.1/24 dev lo\n" for i in range(50))
    clean_lab.exec("remote", ["ip", "-force", "-batch", "-"], input=batch)
    for peer in peers:
        clean_lab.load_remote_mirror(peer)
    first_apply = started = time.monotonic()
    for peer in peers:
        driver.apply(peer)
    one_by_one = time.monotonic() - started
    started = time.monotonic()
    steps = driver.reconcile(peers)
    in_one = time.monotonic() - started
    loaded = {c.name for c in driver.status().connections}
    assert {p.name for p in peers} <= loaded and steps[0].ok
    up = wait_for(lambda: sum(s.state == "up" for s in driver.tunnel_states().values()) == 50,
                  timeout=20)
    print(f"\n50 peers: apply one by one {one_by_one:.2f} s, reconcile {in_one:.2f} s, "
          f"all 50 up {time.monotonic() - first_apply:.2f} s after the first apply")
    assert up, driver.tunnel_states()
