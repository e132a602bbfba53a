"""The VICI message builders and parsers, by plain dict equality."""
from collections import OrderedDict

import pytest

from webui.drivers import ChildSA, Connection, IkeSA
from webui.drivers import vici_messages as vm
from webui.peers import Peer


def make_peer(**kw) -> Peer:
    base = dict(name="branch", local_ip="192.0.2.1", remote_gateway="192.0.2.2",
                local_networks=("198.51.100.0/24",), remote_networks=("203.0.113.0/24",),
                psk="s3cret-psk")
    return Peer(**{**base, **kw})


def test_load_conn_for_a_default_peer():
    assert vm.load_conn(make_peer()) == {"branch": {
        "version": "2",
        "local_addrs": ["192.0.2.1"],
        "remote_addrs": ["192.0.2.2"],
        "proposals": ["aes256-sha256-curve25519-ecp256"],
        "keyingtries": "3",
        "dpd_delay": "30s",
        "rekey_time": "14400s",
        "reauth_time": "6h",
        "send_certreq": "no",
        "local": {"auth": "psk", "id": "192.0.2.1"},
        "remote": {"auth": "psk", "id": "192.0.2.2"},
        "children": {"branch": {
            "mode": "tunnel",
            "local_ts": ["198.51.100.0/24"],
            "remote_ts": ["203.0.113.0/24"],
            "esp_proposals": ["aes256gcm16-curve25519-ecp256"],
            "rekey_time": "3600s",
            "start_action": "start",
            "dpd_action": "restart",
            "close_action": "none",
        }},
    }}


def test_dns_gateway_explicit_ids_and_ikev1_pass_through():
    conn = vm.load_conn(make_peer(remote_gateway="vpn.example.net", local_id="hq@example.net",
                                  peer_id="", ike_version=1, keying_retries=0,
                                  local_networks=("10.0.0.0/24", "10.0.1.0/24")))["branch"]
    assert (conn["version"], conn["remote_addrs"], conn["keyingtries"]) == (
        "1", ["vpn.example.net"], "0")
    assert conn["local"] == {"auth": "psk", "id": "hq@example.net"}
    assert conn["remote"] == {"auth": "psk", "id": "vpn.example.net"}
    # IKEv1: one CHILD_SA per subnet pair.
    assert [(c["local_ts"], c["remote_ts"]) for c in conn["children"].values()] == [
        (["10.0.0.0/24"], ["203.0.113.0/24"]), (["10.0.1.0/24"], ["203.0.113.0/24"])]


def test_load_shared_has_a_deterministic_id_and_both_owners():
    assert vm.load_shared(make_peer(peer_id="remote.example.net")) == {
        "id": "ike-webui-branch", "type": "IKE", "data": "s3cret-psk",
        "owners": ["192.0.2.1", "remote.example.net"]}


@pytest.mark.parametrize("encryption, integrity, expected", [
    (("aes256",), ("sha256", "sha1"), ["aes256-sha256-sha1-ecp256"]),
    # AEAD gets its own proposal and a PRF derived from the chosen integrity algorithms
    (("aes256gcm16", "aes256", "chacha20poly1305"), ("sha384",),
     ["aes256gcm16-chacha20poly1305-prfsha384-ecp256", "aes256-sha384-ecp256"]),
    # AEAD alone with no integrity chosen: the default PRF
    (("aes128gcm16",), (), ["aes128gcm16-prfsha256-ecp256"]),
])
def test_ike_proposals(encryption, integrity, expected):
    peer = make_peer(ike_encryption=encryption, ike_integrity=integrity, ike_dh_groups=("ecp256",))
    assert vm.ike_proposals(peer) == expected


@pytest.mark.parametrize("encryption, integrity, groups, expected", [
    (("aes256gcm16",), (), ("curve25519",), ["aes256gcm16-curve25519"]),
    # no PFS: a proposal without any DH group
    (("aes256",), ("sha256",), ("none",), ["aes256-sha256"]),
    # PFS preferred, no-PFS still accepted; AEAD and CBC kept apart
    (("aes256", "aes128gcm16"), ("sha256",), ("modp2048", "none"),
     ["aes256-sha256-modp2048", "aes256-sha256", "aes128gcm16-modp2048", "aes128gcm16"]),
])
def test_esp_proposals(encryption, integrity, groups, expected):
    peer = make_peer(esp_encryption=encryption, esp_integrity=integrity, esp_dh_groups=groups)
    assert vm.esp_proposals(peer) == expected


@pytest.mark.parametrize("change, field", [
    (dict(ike_version=1, ike_encryption=("aes256gcm16",)), "ike_encryption"),
    (dict(ike_encryption=("aes256",), ike_integrity=()), "ike_integrity"),
    (dict(ike_encryption=()), "ike_encryption"),
    (dict(ike_dh_groups=()), "ike_dh_groups"),
    (dict(esp_encryption=("aes128",), esp_integrity=()), "esp_integrity"),
    (dict(esp_dh_groups=()), "esp_dh_groups"),
])
def test_impossible_proposals_name_the_field(change, field):
    with pytest.raises(vm.InvalidProposal) as err:
        vm.load_conn(make_peer(**change))
    assert err.value.field == field


def test_each_side_s_builder_refuses_only_its_own_side():
    """The IKE proposals of a peer whose ESP choice breaks a rule are still built, and the other
    way round: each builder answers for its own side (the remote's view builds them apart)."""
    bad_esp = make_peer(esp_encryption=("aes128",), esp_integrity=())
    assert vm.ike_proposals(bad_esp) == ["aes256-sha256-curve25519-ecp256"]
    with pytest.raises(vm.InvalidProposal) as err:
        vm.esp_proposals(bad_esp)
    assert err.value.field == "esp_integrity"
    bad_ike = make_peer(ike_encryption=("aes256",), ike_integrity=())
    assert vm.esp_proposals(bad_ike) == vm.esp_proposals(make_peer())
    with pytest.raises(vm.InvalidProposal) as err:
        vm.ike_proposals(bad_ike)
    assert err.value.field == "ike_integrity"


def test_mirror_swaps_sides_and_may_change_the_key():
    peer = make_peer(local_id="hq", peer_id="")
    remote = vm.mirror(peer, psk="wrong")
    assert (remote.local_ip, remote.remote_gateway) == ("192.0.2.2", "192.0.2.1")
    assert (remote.local_id, remote.peer_id) == ("192.0.2.2", "hq")
    assert (remote.local_networks, remote.remote_networks) == (("203.0.113.0/24",),
                                                               ("198.51.100.0/24",))
    assert remote.psk == "wrong" and vm.mirror(peer).psk == "s3cret-psk"


# --- Parsers: raw answers as the vici package hands them over (bytes values, OrderedDicts) -------

RAW_SA = OrderedDict([("uniqueid", b"7"), ("version", b"2"),
                      ("state", b"ESTABLISHED"), ("local-host", b"192.0.2.1"),
                      ("remote-host", b"192.0.2.2"), ("local-id", b"192.0.2.1"),
                      ("remote-id", b"192.0.2.2"), ("initiator", b"yes"),
                      ("initiator-spi", b"a1b2"), ("encr-alg", b"AES_CBC"),
                      ("encr-keysize", b"256"), ("integ-alg", b"HMAC_SHA2_256_128"),
                      ("prf-alg", b"PRF_HMAC_SHA2_256"), ("dh-group", b"CURVE_25519"),
                      ("established", b"42"), ("rekey-time", b"13000"),
                      ("nat-local", b"yes"), ("nat-fake", b"yes"),
                      ("child-sas", OrderedDict([("branch-3", OrderedDict([
                          ("name", b"branch"), ("uniqueid", b"3"), ("state", b"INSTALLED"),
                          ("mode", b"TUNNEL"), ("protocol", b"ESP"), ("encap", b"yes"),
                          ("spi-in", b"c1a2b3c4"), ("spi-out", b"d5e6f708"),
                          ("encr-alg", b"AES_GCM_16"), ("encr-keysize", b"256"),
                          ("bytes-in", b"840"), ("packets-in", b"10"), ("bytes-out", b"900"),
                          ("packets-out", b"11"), ("rekey-time", b"3000"),
                          ("life-time", b"3500"), ("install-time", b"40"),
                          ("local-ts", [b"198.51.100.0/24"]),
                          ("remote-ts", [b"203.0.113.0/24"])]))]))])


def test_parse_sas_decodes_everything():
    assert vm.parse_sas([{"branch": RAW_SA}]) == (IkeSA(
        name="branch", unique_id=7, state="ESTABLISHED", version=2, local_host="192.0.2.1",
        remote_host="192.0.2.2", local_id="192.0.2.1", remote_id="192.0.2.2", initiator=True,
        encryption="AES_CBC-256", integrity="HMAC_SHA2_256_128", prf="PRF_HMAC_SHA2_256",
        dh_group="CURVE_25519", established_for=42, rekey_in=13000, reauth_in=None,
        children=(ChildSA(name="branch", state="INSTALLED", mode="TUNNEL", protocol="ESP",
                          encap=True, encryption="AES_GCM_16-256", integrity="", dh_group="",
                          local_ts=("198.51.100.0/24",), remote_ts=("203.0.113.0/24",),
                          bytes_in=840, bytes_out=900, packets_in=10, packets_out=11,
                          installed_for=40, rekey_in=3000, life_in=3500, spi_in="c1a2b3c4",
                          spi_out="d5e6f708", unique_id=3),),
        nat_local=True, nat_remote=False, nat_forced=True),)


def test_parse_sas_of_a_connecting_sa_has_no_children_and_no_times():
    (sa,) = vm.parse_sas([{"branch": {"uniqueid": b"9", "version": b"1", "state": b"CONNECTING"}}])
    assert (sa.state, sa.version, sa.children, sa.established_for) == ("CONNECTING", 1, (), None)


def test_a_child_sa_listed_without_its_id_has_none_so_no_action_can_name_another():
    """Rekey and Terminate name a CHILD_SA by charon's id: a child listed without one (an older
    charon) gets 0, which the page reads as "no actions", never the id of some other SA."""
    (sa,) = vm.parse_sas([{"branch": {"uniqueid": b"9", "version": b"2", "state": b"ESTABLISHED",
                                      "child-sas": {"branch": {"name": b"branch",
                                                               "state": b"INSTALLED"}}}}])
    (child,) = sa.children
    assert (child.name, child.state, child.unique_id) == ("branch", "INSTALLED", 0)


def test_parse_conns_marks_the_ones_this_ui_loaded():
    events = [{"branch": {"local_addrs": [b"192.0.2.1"], "remote_addrs": [b"vpn.example.net"],
                          "version": b"IKEv2", "children": {"branch": {"mode": b"TUNNEL"}}}},
              {"from-swanctl": {"local_addrs": [b"%any"], "remote_addrs": [b"%any"],
                                "version": b"0", "children": {}}}]
    assert vm.parse_conns(events, managed={"branch"}) == (
        Connection("branch", "IKEv2", ("192.0.2.1",), ("vpn.example.net",), ("branch",), True),
        Connection("from-swanctl", "IKEv1/2", ("%any",), ("%any",), (), False))


def test_parse_algorithms_maps_to_catalogue_keywords():
    # AEAD ciphers are their own kind in charon's answer
    answer = {"encryption": {"AES_CBC": b"aes", "3DES_CBC": b"des"}, "aead": {"AES_GCM_16": b"gcm"},
              "integrity": {"HMAC_SHA2_256_128": b"hmac"},
              "dh": {"MODP_2048": b"gmp", "CURVE_25519": b"curve25519"}}
    assert vm.parse_algorithms(answer) == {"aes256", "aes128", "3des", "aes256gcm16", "aes128gcm16",
                                           "sha256", "modp2048", "curve25519", "none"}


@pytest.mark.parametrize("line, reason", [
    ("received AUTHENTICATION_FAILED notify error",
     "authentication failed: the remote refused it (the keys differ, or it expects other IDs)"),
    ("invalid HASH_V1 payload length, decryption failed?",
     "authentication failed (the pre-shared keys differ)"),
    ("received NO_PROPOSAL_CHOSEN notify error",
     "no matching proposal (the two sides' algorithms differ, or the remote has no connection "
     "for this router's address)"),
    ("giving up after 5 retransmits", "the remote gateway is not responding"),
    ("sending packet: from 192.0.2.1[500] to 192.0.2.2[500] (248 bytes)", None),
])
def test_failure_reason(line, reason):
    assert vm.failure_reason(line) == reason


def _sa(name, state, *children, established=None):
    """One list-sas event, as the wire decoder gives it (bytes values)."""
    sa = {"uniqueid": b"1", "version": b"2", "state": state.encode(),
          "child-sas": {f"{name}-{i}": {"name": name.encode(), "state": s.encode(),
                                        "bytes-in": str(b_in).encode(),
                                        "bytes-out": str(b_out).encode()}
                        for i, (s, b_in, b_out) in enumerate(children)}}
    if established is not None:
        sa["established"] = str(established).encode()
    return {name: sa}


def test_tunnel_states_up_connecting_down():
    from webui.drivers import TunnelState
    sas = [_sa("a", "ESTABLISHED", ("INSTALLED", 100, 200), ("INSTALLED", 1, 2), established=60),
           _sa("a", "ESTABLISHED", ("INSTALLED", 10, 20), established=5),  # a duplicate IKE SA
           _sa("b", "CONNECTING"),
           _sa("c", "ESTABLISHED", ("DELETING", 5, 5), established=9)]
    states = vm.tunnel_states(sas, loaded={"a", "b", "c", "d"},
                              failures={"b": "authentication failed", "d": "timeout"})
    assert states == {
        "a": TunnelState("a", "up", established_for=60, bytes_in=111, bytes_out=222, loaded=True),
        "b": TunnelState("b", "connecting", reason="authentication failed", loaded=True),
        "c": TunnelState("c", "connecting", loaded=True),
        "d": TunnelState("d", "down", reason="timeout", loaded=True),
    }


def test_ikev1_gets_one_child_per_subnet_pair_of_one_family():
    peer = Peer(name="v1", local_ip="192.0.2.1", remote_gateway="192.0.2.2", ike_version=1,
                local_networks=("10.0.0.0/24", "2001:db8:1::/64"),
                remote_networks=("10.1.0.0/24", "10.2.0.0/24", "2001:db8:2::/64"), psk="x" * 20)
    assert vm.child_selectors(peer) == [
        ("v1", ["10.0.0.0/24"], ["10.1.0.0/24"]),
        ("v1-2", ["10.0.0.0/24"], ["10.2.0.0/24"]),
        ("v1-3", ["2001:db8:1::/64"], ["2001:db8:2::/64"]),
    ]
    children = vm.load_conn(peer)["v1"]["children"]
    assert list(children) == ["v1", "v1-2", "v1-3"]
    assert children["v1-2"]["remote_ts"] == ["10.2.0.0/24"]
    assert children["v1-2"]["esp_proposals"] == children["v1"]["esp_proposals"]


def test_ikev2_keeps_every_network_in_one_child():
    peer = Peer(name="v2", local_ip="192.0.2.1", remote_gateway="192.0.2.2",
                local_networks=("10.0.0.0/24",), remote_networks=("10.1.0.0/24", "10.2.0.0/24"),
                psk="x" * 20)
    assert vm.child_selectors(peer) == [("v2", ["10.0.0.0/24"], ["10.1.0.0/24", "10.2.0.0/24"])]


# --- Advanced options (issue 15) -----------------------------------------------------------------

def test_every_advanced_option_reaches_the_message():
    peer = make_peer(remote_gateway="%any", peer_id="branch.example", start_action="none",
                     dpd_delay=10, dpd_action="clear", ike_rekey_time=3600, child_rekey_time=60,
                     ike_reauth=True, encap=True, disable_mobike=True, fragmentation="accept")
    assert vm.load_conn(peer) == {"branch": {
        "version": "2",
        "local_addrs": ["192.0.2.1"],
        "remote_addrs": ["%any"],
        "proposals": ["aes256-sha256-curve25519-ecp256"],
        "keyingtries": "3",
        "dpd_delay": "10s",
        "rekey_time": "0s",
        "reauth_time": "3600s",
        "encap": "yes",
        "mobike": "no",
        "fragmentation": "accept",
        "send_certreq": "no",
        "local": {"auth": "psk", "id": "192.0.2.1"},
        "remote": {"auth": "psk", "id": "branch.example"},
        "children": {"branch": {
            "mode": "tunnel",
            "local_ts": ["198.51.100.0/24"],
            "remote_ts": ["203.0.113.0/24"],
            "esp_proposals": ["aes256gcm16-curve25519-ecp256"],
            "rekey_time": "60s",
            "start_action": "none",
            "dpd_action": "clear",
            "close_action": "none",
        }},
    }}


def test_trap_start_action_is_what_charon_is_told():
    """The traffic trigger itself needs kernel IPsec (the lab's userspace IPsec raises no acquires),
    so what can be proved here is the message: every CHILD_SA trapped, DPD re-trapping."""
    conn = vm.load_conn(make_peer(start_action="trap", dpd_action="trap", ike_version=1,
                                  remote_networks=("203.0.113.0/24", "10.9.0.0/16")))["branch"]
    assert [(c["start_action"], c["dpd_action"]) for c in conn["children"].values()] == [
        ("trap", "trap"), ("trap", "trap")]


def test_ikev1_reauthenticates_and_may_use_aggressive_mode_mobike_is_not_sent():
    conn = vm.load_conn(make_peer(ike_version=1, aggressive=True, ike_reauth=True, disable_mobike=True,
                                  ike_rekey_time=28800))["branch"]
    # IKEv1 has no rekeying without reauthentication: rekey_time already means reauthenticate.
    assert (conn["rekey_time"], conn["aggressive"]) == ("28800s", "yes")
    assert "reauth_time" not in conn and "mobike" not in conn


def test_aggressive_mode_is_never_sent_for_ikev2_and_dpd_off_is_zero():
    conn = vm.load_conn(make_peer(aggressive=True, dpd_delay=0))["branch"]
    assert "aggressive" not in conn and conn["dpd_delay"] == "0s"


@pytest.mark.parametrize("ours, theirs, their_dpd", [
    # the side that starts the tunnel is the one that restarts it when DPD finds it dead
    ("start", "none", "clear"), ("none", "start", "restart"), ("trap", "trap", "clear")])
def test_mirror_turns_who_starts_around(ours, theirs, their_dpd):
    remote = vm.mirror(make_peer(start_action=ours, dpd_action="clear"))
    assert (remote.start_action, remote.dpd_action) == (theirs, their_dpd)


def test_mirror_of_an_any_peer_initiates_to_this_router():
    remote = vm.mirror(make_peer(remote_gateway="%any", peer_id="branch.example", start_action="none",
                                 dpd_action="clear"))
    conn = vm.load_conn(remote)["branch"]
    assert conn["remote_addrs"] == ["192.0.2.1"] and conn["local_addrs"] == ["%any"]
    assert conn["local"]["id"] == "branch.example"
    assert conn["children"]["branch"]["start_action"] == "start"
    assert conn["children"]["branch"]["dpd_action"] == "restart"
