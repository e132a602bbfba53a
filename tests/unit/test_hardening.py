"""Issue 17, the validation holes and the "new key, fresh SA" rule, without a daemon."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.conftest import valid_peer_form
from webui.apply import IPsecService, needs_fresh_sa, usable
from webui.auth import password_problem
from webui.drivers import ConfigError, fake
from webui.drivers import Drivers
from webui.forms import MAX_CHARS, peer_problem
from webui.peers import Peer
from webui.store import PeerStore

GOOD = Peer(name="good", local_ip="192.0.2.1", remote_gateway="192.0.2.2",
            local_networks=("198.51.100.0/24",), remote_networks=("203.0.113.0/24",),
            psk="a-good-key-for-the-tests")


def stored(data_dir) -> dict:
    doc = json.loads((data_dir / "peers.json").read_text())
    return {p["name"]: p for p in doc.get("peers", {}).values()}


@pytest.mark.parametrize("field,value", [
    ("local_ip", "fe80::1%wan0"),
    ("remote_gateway", "2001:db8::4%x,192.0.2.2"),
    ("local_id", "2001:db8::1%x"),
    ("peer_id", "2001:db8::2%\"quoted\""),
    ("remote_networks", "2001:db8::%x/64"),
    ("local_networks", "2001:db8:1::%eth0/48"),
])
def test_scoped_addresses_are_refused_everywhere(browser, data_dir, field, value):
    form = valid_peer_form(**{field: value})
    if field in ("local_ip", "remote_gateway"):
        form.update({"local_ip": "2001:db8::1", "remote_gateway": "2001:db8::2", field: value})
    r = browser.post("/peers", form, htmx=True)
    assert r.status_code == 422
    assert f'id="{field}-error"' in r.get_data(as_text=True)
    assert not (data_dir / "peers.json").exists() or stored(data_dir) == {}


@pytest.mark.parametrize("field", sorted(MAX_CHARS))
def test_every_text_field_has_a_server_side_maximum(browser, data_dir, field):
    # Its own letter per field: the test run treats a long PSK as a secret never to be echoed.
    value = ("k" if field == "psk" else "a") * (MAX_CHARS[field] + 1)
    r = browser.post("/peers", valid_peer_form(**{field: value}), htmx=True)
    body = r.get_data(as_text=True)
    assert r.status_code == 422 and f'id="{field}-error"' in body
    assert f"At most {MAX_CHARS[field]} characters" in body


def test_a_seventy_thousand_character_id_is_refused(browser, data_dir):
    """Over the form body cap it is refused before any field is read; under it, by the field."""
    r = browser.post("/peers", valid_peer_form(local_id="i" * 70000), htmx=True)
    assert r.status_code == 413
    r = browser.post("/peers", valid_peer_form(local_id="i" * 10000), htmx=True)
    assert r.status_code == 422 and 'id="local_id-error"' in r.get_data(as_text=True)
    assert not (data_dir / "peers.json").exists() or stored(data_dir) == {}


@pytest.mark.parametrize("value", ["   ", None], ids=["whitespace", "omitted"])
def test_an_empty_id_is_stored_as_empty_text(browser, data_dir, value):
    r = browser.post("/peers", valid_peer_form(local_id=value, peer_id=value), htmx=True)
    assert r.status_code == 204, r.get_data(as_text=True)
    record = stored(data_dir)["branch-a"]
    assert (record["local_id"], record["peer_id"]) == ("", "")


def test_an_id_stored_as_null_does_not_break_the_filtered_list(app, browser, data_dir):
    """A peer stored as null by an older version still lists and filters."""
    browser.post("/peers", valid_peer_form())
    doc = json.loads((data_dir / "peers.json").read_text())
    next(iter(doc["peers"].values()))["local_id"] = None
    (data_dir / "peers.json").write_text(json.dumps(doc))
    app.extensions["webui"].store = PeerStore(data_dir / "peers.json")
    r = browser.get("/?q=branch")
    assert r.status_code == 200 and "branch-a" in r.get_data(as_text=True)


def test_two_enabled_peers_with_the_same_ids_and_different_keys_are_refused(browser, data_dir):
    assert browser.post("/peers", valid_peer_form()).status_code == 303
    other = dict(name="branch-b", remote_networks="10.9.0.0/16")
    r = browser.post("/peers", valid_peer_form(**other, psk="another-key-entirely"), htmx=True)
    assert r.status_code == 422
    assert 'id="peer_id-error"' in r.get_data(as_text=True) and "either key" in r.get_data(as_text=True)
    # The same key, its own peer ID, or disabled: no ambiguity, accepted.
    assert browser.post("/peers", valid_peer_form(**other), htmx=True).status_code == 204
    assert browser.post("/peers", valid_peer_form(name="branch-c", remote_networks="10.10.0.0/16",
                                                  psk="another-key-entirely",
                                                  peer_id="c.example"), htmx=True).status_code == 204
    assert browser.post("/peers", valid_peer_form(name="branch-d", remote_networks="10.11.0.0/16",
                                                  psk="another-key-entirely", enabled=None),
                        htmx=True).status_code == 204


@pytest.mark.parametrize("setting", ["LAN_INTERFACES", "WAN_INTERFACES", "IPSEC_INTERFACES"])
@pytest.mark.parametrize("value", ["*", "lan*", "eth0 lan0", 'lan"0', "a-name-far-too-long"])
def test_interface_settings_are_validated_at_start(make_app, setting, value):
    with pytest.raises(ConfigError, match=f"WEBUI_{setting}"):
        make_app(**{setting: value})


def test_ordinary_interface_names_pass(make_app):
    make_app(LAN_INTERFACES="br-lan, eth0.2", WAN_INTERFACES="pppoe-wan,wan_6")


@pytest.mark.parametrize("password", ["aaaaaaaaaa", "abababababab", "1234567890", "9876543210",
                                      "abcdefghijkl", "Password123", "qwertyuiop", "administrator"])
def test_weak_passwords_are_refused(password):
    assert password_problem(password)


@pytest.mark.parametrize("password", ["Test-admin-passw0rd-Qx7", "correct horse battery staple",
                                      "k3ep-it-s3cret"])
def test_ordinary_passwords_pass(password):
    assert password_problem(password) is None


# --- Stored peers that break a rule do not stop the others ---------------------------------------

def bad_peers() -> list[Peer]:
    return [replace(GOOD, name="long-id", local_id="a" * 70000, remote_networks=("10.1.0.0/24",)),
            replace(GOOD, name="scoped-gw", remote_gateway="2001:db8::4%x,192.0.2.2",
                    remote_networks=("10.2.0.0/24",)),
            replace(GOOD, name="scoped-net", remote_networks=("2001:db8::%x/64",)),
            replace(GOOD, name="blank-id", peer_id="   ", remote_networks=("10.3.0.0/24",))]


@pytest.mark.parametrize("peer", bad_peers(), ids=lambda p: p.name)
def test_peer_problem_names_the_field(peer):
    field = {"long-id": "local_id", "scoped-gw": "remote_gateway", "scoped-net": "remote_networks",
             "blank-id": "peer_id"}[peer.name]
    assert peer_problem(peer)[0] == field
    assert peer_problem(GOOD) is None


def test_reconcile_loads_every_good_peer_and_names_the_bad_ones(tmp_path):
    store = PeerStore(tmp_path / "peers.json")
    for peer in [GOOD, *bad_peers()]:
        store.add(peer)
    drivers = Drivers(ipsec=fake.FakeIPsec(), kernel=fake.FakeKernel(), firewall=fake.FakeFirewall())
    applier = IPsecService(store, drivers)
    steps = applier.reconcile()
    assert set(drivers.ipsec.loaded) == {"good"}
    assert set(applier.not_applied) == {"long-id", "scoped-gw", "scoped-net", "blank-id"}
    assert "local id is invalid" in applier.not_applied["long-id"]
    assert sorted(s.peer for s in steps if not s.ok) == ["blank-id", "long-id", "scoped-gw", "scoped-net"]
    assert usable(store.all())[0] == [GOOD]


# --- A changed key, ID, address or IKE version needs fresh SAs -----------------------------------

@pytest.mark.parametrize("change", [dict(psk="a-brand-new-key-9"), dict(local_id="hq.example"),
                                    dict(peer_id="b.example"), dict(remote_gateway="192.0.2.3"),
                                    dict(local_ip="192.0.2.9"), dict(ike_version=1)],
                         ids=lambda c: next(iter(c)))
def test_what_needs_a_fresh_sa(change):
    assert needs_fresh_sa(GOOD, replace(GOOD, **change))


@pytest.mark.parametrize("change", [dict(remote_networks=("10.9.0.0/16",)), dict(keying_retries=0),
                                    dict(firewall=("input",)), dict(peer_id="192.0.2.2")],
                         ids=lambda c: next(iter(c)))
def test_what_does_not(change):
    """Networks and proposals are renegotiated by charon itself; an ID spelled out as its default
    is the same ID."""
    assert not needs_fresh_sa(GOOD, replace(GOOD, **change))


def test_saving_a_new_key_asks_the_driver_for_fresh_sas(app, browser):
    browser.post("/peers", valid_peer_form())
    ipsec = app.extensions["webui"].drivers.ipsec
    browser.post("/peers/branch-a", valid_peer_form(remote_networks="10.9.0.0/16", psk=""))
    assert ipsec.renewed == []
    browser.post("/peers/branch-a", valid_peer_form(psk="the-rotated-key-2"))
    assert ipsec.renewed == ["branch-a"]


def test_the_driver_ends_the_old_ike_sas_by_id_and_starts_the_tunnel_again(tmp_path):
    """The VICI conversation of a renewal: the old SAs' unique ids are read before loading, only
    those are terminated after, and the tunnel is initiated when nothing else is on its way."""
    from tests.unit.test_vici_transport import FULL_BUILD, ListeningCharon
    from webui.drivers import strongswan
    charon = ListeningCharon(tmp_path / "charon.vici")
    try:
        sa = {"uniqueid": "7", "version": "2", "state": "ESTABLISHED"}
        charon.replies.update({"get-algorithms": ([], FULL_BUILD),
                               "get-conns": ([], {"conns": ["good"]}),
                               "get-shared": ([], {"keys": []}),
                               "list-sas": ([("list-sa", {"good": sa})], {}),
                               "load-shared": ([], {"success": "yes"}),
                               "load-conn": ([], {"success": "yes"}),
                               "terminate": ([], {"success": "yes"}),
                               "initiate": ([], {"success": "yes"})})
        driver = strongswan.ViciDriver(charon.path, data_dir=tmp_path)
        driver.apply(GOOD, renew=True)
        assert charon.served[-1].commands == ["get-conns", "list-sas", "load-shared", "load-conn",
                                              "terminate", "list-sas", "initiate"]
        # A reconcile with the same settings touches no SA; with a new key it renews by itself.
        driver.reconcile([GOOD])
        assert "terminate" not in charon.served[-1].commands
        driver.reconcile([replace(GOOD, psk="rotated-while-the-ui-was-down")])
        assert "terminate" in charon.served[-1].commands
    finally:
        charon.close()


def test_the_loaded_state_file_is_private(tmp_path):
    import os
    from webui.drivers import strongswan
    driver = strongswan.ViciDriver(tmp_path / "none.vici", data_dir=tmp_path)
    driver._save_state()
    assert os.stat(tmp_path / "ipsec-loaded.json").st_mode & 0o777 == 0o600
