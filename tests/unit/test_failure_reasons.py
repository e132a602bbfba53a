"""Why a tunnel is down, from charon's own log lines; what charon can do, from get-algorithms; and
the per-tunnel state the status cells show, from list-sas."""
from __future__ import annotations

import re

import pytest

from webui.drivers import TunnelState
from webui.drivers.failure_reasons import id_mismatch
from webui.drivers import vici_messages as vm
from webui.drivers.failure_reasons import Failures

AUTH = "authentication failed: the remote refused it (the keys differ, or it expects other IDs)"
PROPOSAL = "no matching proposal (the two sides' algorithms differ)"
# NO_PROPOSAL_CHOSEN from the remote: its algorithms differ, or it has no config for our address.
NO_PROPOSAL_CHOSEN = ("no matching proposal (the two sides' algorithms differ, or the remote has no "
                      "connection for this router's address)")
SILENT = "the remote gateway is not responding"

# The `msg` of charon 5.9's VICI log events, as it words them (the log-line prefixes such as
# "13[IKE] <branch|1>" are not part of the message).
LINES = [
    # IKEv2 initiator, the responder's key differs
    ("received AUTHENTICATION_FAILED notify error", AUTH),
    # IKEv2 responder, the initiator's key differs
    ("tried 1 shared key for '192.0.2.2' - '192.0.2.1', but MAC mismatched",
     "authentication failed (the pre-shared keys differ)"),
    # IKEv1 main mode, the keys differ
    ("invalid HASH_V1 payload length, decryption failed?",
     "authentication failed (the pre-shared keys differ)"),
    ("no shared key found for '192.0.2.1' - 'branch.example.com'",
     "authentication failed (no pre-shared key for the IDs '192.0.2.1' - 'branch.example.com')"),
    ("received INVALID_ID_INFORMATION error notify",
     "the remote refused the networks (traffic selectors) or the ID (INVALID_ID_INFORMATION)"),
    # IKEv1 initiator, the remote presents another ID than this peer expects
    ("IDir 'branch.example.com' does not match to '192.0.2.2'",
     "the IDs do not match: the remote presented branch.example.com, this peer expects 192.0.2.2"),
    # IKEv1 responder, the networks differ (quick mode)
    ("no matching CHILD_SA config found for 10.99.0.0/24 === 198.51.100.0/24",
     "the networks the remote asked for (198.51.100.0/24 here, 10.99.0.0/24 there) do not match "
     "this peer's (traffic selectors)"),
    ("received NO_PROPOSAL_CHOSEN notify error", NO_PROPOSAL_CHOSEN),
    ("no acceptable proposal found", PROPOSAL),
    ("no matching proposal found, sending NO_PROPOSAL_CHOSEN", NO_PROPOSAL_CHOSEN),
    ("received TS_UNACCEPTABLE notify, no CHILD_SA built",
     "the remote did not accept the networks (traffic selectors)"),
    ("unable to resolve vpn.branch.example.com, initiate aborted",
     "the remote gateway's name vpn.branch.example.com cannot be resolved"),
    ("peer not responding, trying again (2/3)", SILENT),
    ("giving up after 5 retransmits", SILENT),
    # IKEv1 words for the same failures
    ("received AUTHENTICATION_FAILED error notify", AUTH),
    ("received proposals unacceptable", PROPOSAL),
    ("no proposal found", PROPOSAL),
    # an algorithm this strongSwan lacks
    ("configured DH group CURVE_25519 not supported",
     "this strongSwan does not support DH group CURVE_25519 (a plugin is missing)"),
    ("requested DH group ECP_256 not supported",
     "the remote insists on DH group ECP_256, which this strongSwan does not support "
     "(a plugin is missing)"),
    ("failed to create ESP context: unsupported AEAD algorithm AES_GCM_16",
     "this strongSwan cannot do AES_GCM_16 for the tunnel (a plugin is missing)"),
    # INVALID_KE_PAYLOAD, from each end
    ("peer didn't accept DH group MODP_2048, it requested ECP_256",
     "the remote wants DH group ECP_256, not MODP_2048 (INVALID_KE_PAYLOAD)"),
    ("DH group MODP_2048 unacceptable, requesting ECP_256",
     "the remote offered DH group MODP_2048; this end asked for ECP_256 (INVALID_KE_PAYLOAD)"),
    # IDs and addresses no connection here is for
    ("no matching peer config found",
     "no connection here matches the remote's IDs (check local and peer ID on both sides)"),
    ("no peer config found",
     "no connection here matches the remote's IDs (check local and peer ID on both sides)"),
    # names NO_PROPOSAL_CHOSEN too, but says more: the addresses come first
    ("no IKE config found for 192.0.2.2...192.0.2.1, sending NO_PROPOSAL_CHOSEN",
     "no connection here for the addresses 192.0.2.2...192.0.2.1"),
    ("traffic selectors 203.0.113.0/24 === 198.51.100.0/24 unacceptable",
     "the networks the remote asked for (203.0.113.0/24 here, 198.51.100.0/24 there) do not "
     "match this peer's (traffic selectors)"),
    # the kernel
    ("unable to install inbound and outbound IPsec SA (SAD) in kernel",
     "the tunnel's keys could not be installed in the kernel (does it have ESP and XFRM?)"),
    ("unable to install IPsec policies (SPD) in kernel",
     "the tunnel's policies could not be installed in the kernel"),
]
# What charon logs on the way to a tunnel that works: none of it is a failure.
HARMLESS = [
    "initiating IKE_SA branch[1] to 192.0.2.2",
    "sending packet: from 192.0.2.1[500] to 192.0.2.2[500] (248 bytes)",
    "authentication of '192.0.2.1' (myself) with pre-shared key",
    "authentication of '192.0.2.2' with pre-shared key successful",
    "IKE_SA branch[1] established between 192.0.2.1[192.0.2.1]...192.0.2.2[192.0.2.2]",
    "selected proposal: IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519",
    "CHILD_SA branch{1} established with SPIs c1a2b3c4_i c5d6e7f8_o and TS "
    "198.51.100.0/24 === 203.0.113.0/24",
    "retransmit 1 of request with message ID 0",
    # a responder with several configs for the address tries the next one: not a failure yet
    "no matching proposal found, trying alternative config",
    "",
]


@pytest.mark.parametrize("line, reason", LINES, ids=[line[:48] for line, _ in LINES])
def test_each_failure_charon_logs_has_its_reason(line, reason):
    assert vm.failure_reason(line) == reason


def test_every_pattern_of_the_table_is_fed_a_line_here():
    """A pattern added to the table without a line above would be untested."""
    from webui.drivers.failure_reasons import REASONS
    unfed = [p for p, _ in REASONS if not any(re.search(p, line) for line, _ in LINES)]
    assert unfed == []


@pytest.mark.parametrize("line", HARMLESS)
def test_lines_of_a_working_negotiation_are_no_failure(line):
    assert vm.failure_reason(line) is None


def test_a_wrong_id_found_as_the_responder_names_the_ids_and_not_the_key():
    assert id_mismatch("branch.example.com", "%any") == \
        "the IDs do not match: the remote presented branch.example.com"
    assert id_mismatch("192.0.2.2", "router.example.com") == ("the IDs do not match: the remote "
                                                              "presented 192.0.2.2 and asked for "
                                                              "this router as router.example.com")


def test_the_listener_remembers_the_reason_per_tunnel_until_it_is_cleared():
    failures = Failures(ttl=60)
    assert failures.note_log("branch", "giving up after 5 retransmits") == SILENT
    assert failures.note_log("branch", "sending packet: from a to b") is None
    assert failures.note_log("hq", "received AUTHENTICATION_FAILED notify error") == AUTH
    assert failures.note_log("", "received NO_PROPOSAL_CHOSEN notify error") == NO_PROPOSAL_CHOSEN
    assert failures.current() == {"branch": SILENT, "hq": AUTH}, "a harmless line keeps the reason"
    failures.clear("branch")
    assert failures.current() == {"hq": AUTH}


def test_reasons_are_forgotten_after_their_time():
    failures = Failures(ttl=0)
    failures.note_log("branch", "giving up after 5 retransmits")
    assert failures.current() == {}


# --- get-algorithms ------------------------------------------------------------------------------

FULL_5 = {"encryption": {"AES_CBC": b"aes", "3DES_CBC": b"des"},
          "aead": {"AES_GCM_16": b"gcm", "CHACHA20_POLY1305": b"chapoly"},
          "integrity": {"HMAC_SHA1_96": b"hmac", "HMAC_SHA2_256_128": b"hmac",
                        "HMAC_SHA2_384_192": b"hmac", "HMAC_SHA2_512_256": b"hmac"},
          "dh": {"MODP_1024": b"gmp", "MODP_2048": b"gmp", "MODP_3072": b"gmp",
                 "MODP_4096": b"gmp", "ECP_256": b"openssl", "ECP_384": b"openssl",
                 "CURVE_25519": b"openssl"}}
EVERYTHING = {"aes256gcm16", "aes128gcm16", "chacha20poly1305", "aes256", "aes128", "3des",
              "sha256", "sha384", "sha512", "sha1", "curve25519", "ecp256", "ecp384", "modp3072",
              "modp4096", "modp2048", "modp1024", "none"}


def test_a_full_strongswan_5_supports_the_whole_catalogue():
    assert vm.parse_algorithms(FULL_5) == EVERYTHING


def test_strongswan_6_reports_dh_groups_as_key_exchange_methods():
    answer = {k: v for k, v in FULL_5.items() if k != "dh"}
    answer["ke"] = dict(FULL_5["dh"], ML_KEM_768=b"ml")
    assert vm.parse_algorithms(answer) == EVERYTHING


def test_a_small_router_build_offers_only_what_it_has():
    """OpenWrt's minimal build: AES-CBC, SHA-1/2, MODP; no GCM, ChaCha, ECP or Curve25519."""
    answer = {b"encryption": {b"AES_CBC": b"aes"}, b"integrity": {b"HMAC_SHA1_96": b"hmac",
                                                                   b"HMAC_SHA2_256_128": b"hmac"},
              b"dh": {b"MODP_2048": b"gmp", b"MODP_1024": b"gmp"}, b"hasher": {b"HASH_SHA1": b"x"}}
    assert vm.parse_algorithms(answer) == {"aes256", "aes128", "sha1", "sha256", "modp2048",
                                           "modp1024", "none"}


def test_nothing_reported_leaves_only_no_pfs():
    assert vm.parse_algorithms({}) == {"none"}
    assert vm.parse_algorithms({"dh": None, "ke": {}}) == {"none"}


# --- list-sas -> status cells --------------------------------------------------------------------

def child(state, bytes_in=0, bytes_out=0):
    return {"state": state.encode(), "bytes-in": str(bytes_in).encode(),
            "bytes-out": str(bytes_out).encode()}


def sa(state, children=(), established=None):
    found = {"state": state.encode(), "child-sas": {f"c{i}": c for i, c in enumerate(children)}}
    if established is not None:
        found["established"] = str(established).encode()
    return found


def test_every_sa_of_one_event_counts_whatever_the_one_before_it_was():
    events = [{"a": sa("CONNECTING"), "b": sa("ESTABLISHED", [child("INSTALLED", 5, 6)], 10),
               "c": sa("DELETING"), "d": sa("ESTABLISHED", [child("INSTALLED", 1, 2)], 3)}]
    states = vm.tunnel_states(events, loaded=(), failures={})
    assert {n: s.state for n, s in states.items()} == {
        "a": "connecting", "b": "up", "c": "connecting", "d": "up"}
    assert (states["d"].bytes_in, states["d"].bytes_out, states["d"].established_for) == (1, 2, 3)


def test_every_child_counts_whatever_the_one_before_it_was():
    events = [{"a": sa("ESTABLISHED", [child("CREATED"), child("REKEYED", 7, 8),
                                       child("DELETING", 100, 100), child("INSTALLED", 1, 1)], 9)}]
    (state,) = vm.tunnel_states(events, loaded={"a"}, failures={}).values()
    assert state == TunnelState("a", "up", established_for=9, bytes_in=8, bytes_out=9, loaded=True)


@pytest.mark.parametrize("ike", ["ESTABLISHED", "REKEYING", "REKEYED"])
@pytest.mark.parametrize("child_state", ["INSTALLED", "REKEYING", "REKEYED", "UPDATING"])
def test_up_means_an_established_ike_sa_with_an_installed_child(ike, child_state):
    events = [{"a": sa(ike, [child(child_state)], 1)}]
    assert vm.tunnel_states(events, (), {})["a"].state == "up"


@pytest.mark.parametrize("ike, child_state", [
    ("CONNECTING", "INSTALLED"), ("DELETING", "INSTALLED"), ("PASSIVE", "INSTALLED"),
    ("ESTABLISHED", "CREATED"), ("ESTABLISHED", "INSTALLING"), ("ESTABLISHED", "DELETING"),
    ("ESTABLISHED", "DESTROYING"), ("ESTABLISHED", None)])
def test_anything_short_of_that_is_connecting(ike, child_state):
    events = [{"a": sa(ike, [child(child_state)] if child_state else [], 1)}]
    state = vm.tunnel_states(events, (), {"a": AUTH})["a"]
    assert (state.state, state.reason) == ("connecting", AUTH)


def test_a_loaded_or_failed_tunnel_without_an_sa_is_down_with_its_reason():
    states = vm.tunnel_states([], loaded=["a", "b"], failures={"b": SILENT, "gone": AUTH})
    assert states == {"a": TunnelState("a", "down", loaded=True),
                      "b": TunnelState("b", "down", reason=SILENT, loaded=True),
                      "gone": TunnelState("gone", "down", reason=AUTH, loaded=False)}


def test_up_wins_over_a_stale_reason_and_the_newest_sa_gives_the_age():
    events = [{"a": sa("ESTABLISHED", [child("INSTALLED", 10, 20)], 50)},
              {"a": sa("ESTABLISHED", [child("INSTALLED", 1, 2)], 70)},
              {"a": sa("ESTABLISHED", [child("INSTALLED", 1, 2)])}]
    state = vm.tunnel_states(events, loaded=["a"], failures={"a": AUTH})["a"]
    assert state == TunnelState("a", "up", established_for=70, bytes_in=12, bytes_out=24,
                                loaded=True)


def test_an_up_tunnel_charon_tells_little_about_shows_zeros_not_guesses():
    events = [{"a": {"state": b"ESTABLISHED", "child-sas": {"a-1": {"state": b"INSTALLED"}}}}]
    assert vm.tunnel_states(events, (), {})["a"] == TunnelState("a", "up", established_for=0)


# --- list-sas and list-conns -> the status pane ----------------------------------------------------

def test_an_sa_charon_tells_little_about_reads_as_zeros_and_unknowns():
    (sa,) = vm.parse_sas([{"a": {"state": b"CONNECTING"}}])
    assert (sa.unique_id, sa.version, sa.reauth_in, sa.nat_remote, sa.children) == (
        0, 0, None, False, ())


def test_reauthentication_time_and_nat_of_an_sa():
    behind_nat, direct = vm.parse_sas([
        {"a": {"state": b"ESTABLISHED", "reauth-time": b"5000", "nat-remote": b"yes"}},
        {"b": {"state": b"ESTABLISHED", "nat-remote": b"no"}}])
    assert (behind_nat.reauth_in, behind_nat.nat_remote) == (5000, True)
    assert (direct.reauth_in, direct.nat_remote) == (None, False)


def test_a_child_without_counters_or_names_reads_as_zeros_and_its_key():
    """Older charons key child SAs by the config's name and leave out what is not there yet."""
    (sa,) = vm.parse_sas([{"a": {"state": b"ESTABLISHED", "child-sas": {
        "branch": {"state": b"INSTALLED"}}}}])
    (child,) = sa.children
    assert (child.name, child.bytes_in, child.bytes_out, child.packets_in, child.packets_out,
            child.integrity, child.dh_group) == ("branch", 0, 0, 0, 0, "", "")


def test_a_cbc_child_with_pfs_shows_its_integrity_and_group():
    child = vm.parse_child("b-1", {"name": b"b", "encr-alg": b"AES_CBC", "encr-keysize": b"128",
                                   "integ-alg": b"HMAC_SHA2_256_128", "dh-group": b"MODP_2048"})
    assert (child.encryption, child.integrity, child.dh_group) == (
        "AES_CBC-128", "HMAC_SHA2_256_128", "MODP_2048")


def test_names_charon_sends_in_another_encoding_are_shown_not_refused():
    (conn,) = vm.parse_conns([{b"caf\xe9": {"version": b"IKEv1/2"}}])
    assert (conn.name, conn.version) == ("caf\ufffd", "IKEv1/2")


# --- What the proposal builder says when it cannot build one --------------------------------------

def _peer(**changes):
    from webui.peers import Peer
    return Peer(name="b", local_ip="192.0.2.1", remote_gateway="192.0.2.2",
                local_networks=("198.51.100.0/24",), remote_networks=("203.0.113.0/24",),
                psk="x" * 20, **changes)


@pytest.mark.parametrize("changes, field, message", [
    # The form's words (tests/unit/test_messages.py): one rule set, webui/peers.py's.
    (dict(ike_encryption=()), "ike_encryption", "Choose at least one encryption algorithm."),
    (dict(ike_dh_groups=()), "ike_dh_groups", "Choose at least one DH group."),
    (dict(ike_version=1, ike_encryption=("aes256gcm16",)), "ike_encryption",
     "IKEv1 cannot use AES-GCM or ChaCha20-Poly1305 for IKE; choose AES-CBC (ESP may still use them)."),
    (dict(ike_encryption=("aes256",), ike_integrity=()), "ike_integrity",
     "AES-CBC and 3DES need an integrity algorithm; choose at least one."),
    (dict(esp_encryption=()), "esp_encryption", "Choose at least one encryption algorithm."),
    (dict(esp_dh_groups=()), "esp_dh_groups", "Choose at least one DH group, or None for no PFS."),
    (dict(esp_encryption=("aes128",), esp_integrity=()), "esp_integrity",
     "AES-CBC and 3DES need an integrity algorithm; choose at least one."),
])
def test_the_builder_names_the_field_and_says_why(changes, field, message):
    with pytest.raises(vm.InvalidProposal) as refused:
        vm.load_conn(_peer(**changes))
    assert (refused.value.field, str(refused.value)) == (field, message)
