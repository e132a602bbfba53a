"""webui/diagnosis.py on lines the lab's real charons logged (tests/unit/data/charon_lines.json).

Each entry is what the router's charon sent on VICI's `log` event during one misconfiguration
of the remote, with the router or the remote initiating: captured from the lab (tests/lab.py)
with the peer PEER below on the router and its mirror, changed as the entry's name says, on the
remote. The lines go through the monitor (attribution, the per-peer ring) as they would live.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from webui.diagnosis import Proposal, explain, label, parse_proposals, smallest_change
from webui.drivers import LogLine
from webui.drivers.monitor import Monitor
from webui.peers import Peer

LINES = json.loads((Path(__file__).parent / "data" / "charon_lines.json").read_text())
PEER = Peer(name="diag", local_ip="192.0.2.1", remote_gateway="192.0.2.2",
            local_networks=("198.51.100.0/24",), remote_networks=("203.0.113.0/24",),
            psk="diagnosis-key-never-shown-4242", ike_encryption=("aes256",),
            ike_integrity=("sha256",), ike_dh_groups=("modp2048",), esp_encryption=("aes256",),
            esp_integrity=("sha256",), esp_dh_groups=("modp2048",), keying_retries=1,
            start_action="none")


def peer_of(case: str) -> Peer:
    setup, who = case.split("/")
    peer = replace(PEER, name=f"{setup}-{who.split('-')[0]}",
                   ike_version=1 if setup.endswith("v1") else 2)
    return replace(peer, remote_gateway="192.0.2.250") if setup.startswith("silent") else peer


def replay(case: str, peer: Peer | None = None) -> tuple[Monitor, Peer]:
    """The case's lines through a monitor whose store holds `peer` (only)."""
    peer = peer or peer_of(case)
    monitor = Monitor("/nonexistent", session=None,
                      peers_at=lambda address, remote_id: [peer.name]
                      if address == peer.remote_gateway else [])
    for event in LINES[case]:
        monitor._log_line(event)
    return monitor, peer


def findings(case: str):
    monitor, peer = replay(case)
    return explain(peer, monitor.log_lines(peer.name))


def only(case: str):
    found = findings(case)
    assert len(found) == 1, found
    return found[0]


# --- proposals -----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["ike-v2/remote-initiates", "ike-v1/remote-initiates"])
def test_ike_proposals_offered_by_the_remote_side_by_side_with_the_smallest_change(case):
    finding = only(case)
    assert finding.kind == "proposals" and finding.who == "192.0.2.2"
    assert "offers AES-128-CBC / SHA-1 (weak) / MODP-1024 (weak) for IKE" in finding.text
    assert finding.table == (("Encryption", "AES-128-CBC", "AES-256-CBC", "nothing"),
                             ("Integrity", "SHA-1 (weak)", "SHA-256", "nothing"),
                             ("DH group", "MODP-1024 (weak)", "MODP-2048", "nothing"))
    assert finding.change == ("Add AES-128-CBC to IKE encryption, SHA-1 (weak) to IKE integrity "
                              "and MODP-1024 (weak) to IKE DH groups.")
    assert finding.fields == ("ike_encryption", "ike_integrity", "ike_dh_groups")
    assert "ask the remote's administrator for AES-256-CBC / SHA-256 / MODP-2048" in finding.ask


def test_esp_proposals_in_ikev1_count_the_pfs_group():
    finding = only("esp-v1/remote-initiates")
    assert finding.title == "No ESP proposal in common"
    assert finding.fields == ("esp_encryption", "esp_integrity", "esp_dh_groups")
    assert "MODP-1024 (weak) to ESP DH groups" in finding.change


def test_esp_proposals_in_ikev2_leave_the_group_out_and_say_so():
    """IKEv2's first CHILD_SA is keyed with the IKE SA: charon drops the DH group from both lists."""
    finding = only("esp-v2/remote-initiates")
    assert finding.change == "Add AES-128-CBC to ESP encryption and SHA-1 (weak) to ESP integrity."
    assert "check that the PFS groups match too" in finding.text


@pytest.mark.parametrize("case,late,failed", [
    ("esp-v2/remote-initiates", "received proposals", "proposal found"),
    ("esp-v2/remote-initiates", "configured proposals", "proposal found"),
    ("ike-v1/remote-initiates", "received proposals", "proposal found"),
    ("ike-v1/remote-initiates", "configured proposals", "proposal found"),
    ("remote-id-v2/remote-initiates", "looking for peer configs", "peer config found"),
    ("remote-id-v1/remote-initiates", "looking for pre-shared key peer configs", "peer config found")])
def test_lines_that_arrive_after_the_failure_line_are_still_paired_with_it(case, late, failed):
    """charon may raise its log lines to VICI out of order (two workers drain vici_logger's
    queue): the proposals or IDs a failure names may come after it (a whole-suite run saw it)."""
    events = list(LINES[case])
    moved = next(e for e in events if e["msg"].startswith(late))
    failure = next(e for e in events if failed in e["msg"])
    events.remove(moved)
    events.insert(events.index(failure) + 1, moved)
    peer = peer_of(case)
    monitor, _ = replay(case, peer)
    in_order = explain(peer, monitor.log_lines(peer.name))
    monitor = Monitor("/nonexistent", session=None, peers_at=lambda address, remote_id: [peer.name])
    for event in events:
        monitor._log_line(event)
    found = explain(peer, monitor.log_lines(peer.name))
    assert [(f.title, f.text, f.change, f.table) for f in found] == \
        [(f.title, f.text, f.change, f.table) for f in in_order]
    assert found and found[0].kind in ("proposals", "ids") and found[0].change


@pytest.mark.parametrize("case,protocol", [("ike-v2/router-initiates", "IKE"),
                                           ("ike-v1/router-initiates", "IKE"),
                                           ("esp-v2/router-initiates", "ESP"),
                                           ("esp-v1/router-initiates", "ESP")])
def test_as_the_initiator_only_the_refusal_is_known_and_the_page_says_so(case, protocol):
    finding = only(case)
    assert finding.title == f"The remote refused this peer's {protocol} proposals"
    assert "aes256-sha256-modp2048" in finding.text and "does not say" in finding.text
    assert not finding.table and not finding.change


def test_the_smallest_change_picks_the_offer_needing_fewest_additions():
    offers = parse_proposals("IKE:3DES_CBC/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024, "
                             "IKE:AES_CBC_256/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_2048")
    offer, additions = smallest_change(offers, PEER)
    assert offer.encryption == ("AES_CBC_256",) and additions == [("integrity", "sha1")]


def test_an_offer_the_form_cannot_express_is_no_change_here():
    offers = parse_proposals("IKE:CAMELLIA_CBC_128/HMAC_MD5_96/PRF_HMAC_MD5/MODP_768")
    assert smallest_change(offers, PEER) is None
    assert label("CAMELLIA_CBC_128") == "CAMELLIA_CBC_128"  # shown as charon names it


def test_an_aead_offer_needs_no_integrity():
    offer = parse_proposals("ESP:AES_GCM_16_256/NO_EXT_SEQ")[0]
    assert offer == Proposal("ESP", ("AES_GCM_16_256",), (), ()) and offer.aead
    assert smallest_change([offer], PEER, pfs_counts=False)[1] == [("encryption", "aes256gcm16")]


# --- IDs, keys -----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["remote-id-v2/remote-initiates", "remote-id-v1/remote-initiates",
                                  "remote-id-v1/router-initiates"])
def test_a_wrong_remote_id_names_both_ids(case):
    finding = only(case)
    assert finding.kind == "ids" and finding.fields == ("peer_id",)
    assert "presented ID branch.example.com; this peer expects 192.0.2.2" in finding.text
    assert finding.change == "To match them: set Peer ID to branch.example.com."


@pytest.mark.parametrize("presented", ["<img src=x onerror=alert(1)>", "has space.example.com",
                                       "x" * 254 + ".example.com"])
def test_an_id_the_form_would_refuse_is_not_suggested(presented):
    lines = [LogLine(1.0, 0, 5, "192.0.2.2 is initiating an IKE_SA"),
             LogLine(2.0, 1, 5, "looking for peer configs matching 192.0.2.1[%any]...192.0.2.2"
                                f"[{presented}]"),
             LogLine(3.0, 1, 5, "no matching peer config found")]
    finding = explain(PEER, lines)[0]
    assert finding.kind == "ids" and f"presented ID {presented}" in finding.text
    assert "This router cannot accept that ID" in finding.text and "ask the remote's" in finding.text
    assert finding.change == "" and finding.fields == (), "no field here would take it"


def test_the_reverse_the_remote_expects_another_id_for_this_router():
    finding = only("our-id-v2/remote-initiates")
    assert finding.kind == "ids" and finding.fields == ("local_id",)
    assert "asked for this router as router.example.com; this peer presents 192.0.2.1" in finding.text


@pytest.mark.parametrize("case", ["key-v2/remote-initiates", "key-v1/remote-initiates"])
def test_a_wrong_key_refused_here_says_this_router_refused(case):
    finding = only(case)
    assert finding.kind == "key" and finding.fields == ("psk",)
    assert "this router refused it" in finding.text


def test_a_wrong_key_in_ikev1_as_initiator_is_the_key_not_a_silent_remote():
    """charon cannot read the remote's answers, retransmits and gives up: the key, not reachability."""
    finding = only("key-v1/router-initiates")
    assert finding.kind == "key" and "could not decrypt the answers of 192.0.2.2" in finding.text


@pytest.mark.parametrize("case", ["key-v2/router-initiates", "remote-id-v2/router-initiates",
                                  "our-id-v2/router-initiates"])
def test_refused_by_the_remote_in_ikev2_says_key_or_ids_with_this_peers_values(case):
    finding = only(case)
    assert finding.title == "The remote refused this router's authentication"
    assert "presents ID 192.0.2.1 and expects 192.0.2.2" in finding.text
    assert finding.fields == ("psk", "local_id", "peer_id")


def test_a_change_of_the_ids_or_key_just_before_an_authentication_failure_is_named_first():
    monitor, peer = replay("key-v2/router-initiates")
    lines = monitor.log_lines(peer.name)
    failed_at = lines[-1].at
    finding = explain(peer, lines, {"peer_id": failed_at - 5, "psk": failed_at - 2})[0]
    assert finding.changed == (("peer_id", failed_at - 5), ("psk", failed_at - 2))
    assert finding.fields == ("peer_id", "psk", "local_id"), "the changed fields first"
    assert "diagnosis-key-never-shown" not in repr(finding)
    # a change after the failure (a fix being tried), or one the tunnel came up after: not it
    assert explain(peer, lines, {"peer_id": failed_at + 1})[0].changed == ()
    up = LogLine(failed_at - 3, 0, 1, "CHILD_SA diag{1} established with SPIs c1_i c2_o and TS "
                 "198.51.100.0/24 === 203.0.113.0/24")
    assert explain(peer, [up, *lines], {"peer_id": failed_at - 5})[0].changed == ()
    assert explain(peer, [up, *lines], {"psk": failed_at - 2})[0].changed == (("psk", failed_at - 2),)


def test_a_changed_key_is_no_cause_of_a_proposal_mismatch():
    monitor, peer = replay("ike-v2/remote-initiates")
    lines = monitor.log_lines(peer.name)
    assert [f.changed for f in explain(peer, lines, {"psk": lines[0].at - 1})] == [()]


# --- networks, reachability ----------------------------------------------------------------------

@pytest.mark.parametrize("case", ["ts-v2/remote-initiates", "ts-v1/remote-initiates"])
def test_networks_proposed_by_the_remote_against_this_peers(case):
    finding = only(case)
    assert finding.kind == "networks"
    assert ("proposed the networks 10.99.0.0/24 on its side and 198.51.100.0/24 on this side"
            in finding.text)
    assert finding.change == "To match them: set Remote networks to 10.99.0.0/24."
    assert finding.fields == ("remote_networks",)


@pytest.mark.parametrize("case", ["ts-v2/router-initiates", "ts-v1/router-initiates"])
def test_networks_refused_by_the_remote_show_what_this_peer_proposed(case):
    finding = only(case)
    assert finding.kind == "networks"
    assert "198.51.100.0/24 here, 203.0.113.0/24 there" in finding.text


def test_a_silent_remote_does_not_answer_on_udp_500_4500():
    finding = only("silent-v2/router-initiates")
    assert finding.kind == "reachability"
    assert finding.text.startswith("The remote gateway 192.0.2.250 does not answer on UDP 500/4500: "
                                   "3 retransmits, no answer")


def test_only_the_last_failed_negotiation_counts():
    monitor, peer = replay("ts-v2/remote-initiates")
    key_case = LINES["key-v2/remote-initiates"]
    for event in key_case:  # the same peer, a later attempt with another IKE SA
        monitor._log_line({**event, "ikesa-name": peer.name} if event.get("ikesa-name") not in
                          (None, "(unnamed)") else event)
    kinds = [f.kind for f in explain(peer, monitor.log_lines(peer.name))]
    assert kinds == ["key"]


def test_nothing_to_explain_without_a_failure():
    lines = [LogLine(1.0, 0, 3, "IKE_SA a[3] established between 192.0.2.1[x]...192.0.2.2[y]")]
    assert explain(PEER, lines) == []


# --- attribution and row reasons (issue 11's open items) -----------------------------------------

@pytest.mark.parametrize("case,reason", [
    ("key-v2/remote-initiates", "authentication failed (the pre-shared keys differ)"),
    ("remote-id-v2/remote-initiates", "the IDs do not match: the remote presented branch.example.com"),
    ("remote-id-v1/remote-initiates", "the IDs do not match: the remote presented branch.example.com"),
    ("our-id-v2/remote-initiates",
     "the IDs do not match: the remote presented 192.0.2.2 and asked for this router as "
     "router.example.com"),
    ("ike-v2/remote-initiates", "no matching proposal (the two sides' algorithms differ)"),
])
def test_a_failure_the_remote_started_is_the_right_peers_with_its_address(case, reason):
    monitor, peer = replay(case)
    tunnel = monitor.snapshot(polled=False).tunnels[peer.name]
    assert (tunnel.reason, tunnel.direction) == (reason, "192.0.2.2")
    assert "(unnamed)" not in monitor.snapshot(polled=False).tunnels


def test_a_wrong_id_reads_differently_from_a_wrong_key():
    reasons = {case: replay(case)[0].snapshot(polled=False).tunnels[peer_of(case).name].reason
               for case in ("key-v2/remote-initiates", "remote-id-v2/remote-initiates",
                            "key-v1/remote-initiates", "remote-id-v1/remote-initiates")}
    assert "key" in reasons["key-v2/remote-initiates"] == reasons["key-v1/remote-initiates"]
    assert "ID" in reasons["remote-id-v2/remote-initiates"]
    assert "key" not in reasons["remote-id-v2/remote-initiates"]


def test_ikev1_giving_up_after_a_wrong_key_keeps_the_key_as_the_reason():
    monitor, peer = replay("key-v1/router-initiates")
    assert monitor.snapshot(polled=False).tunnels[peer.name].reason == \
        "authentication failed (the pre-shared keys differ)"


def test_lines_of_a_remote_no_peer_is_at_go_to_nobody():
    other = replace(PEER, name="elsewhere", remote_gateway="192.0.2.77")
    monitor, _ = replay("key-v2/remote-initiates", other)
    assert monitor.log_lines("elsewhere") == []
    assert "elsewhere" not in monitor.snapshot(polled=False).tunnels


def test_the_remotes_id_picks_among_peers_at_the_same_address():
    """Two peers behind one gateway: once the remote has sent its ID, its lines are those of the
    peer that expects that ID (before, of both: either may be the one)."""
    seen = []

    def peers_at(address, remote_id):
        seen.append((address, remote_id))
        return ["by-id"] if remote_id == "branch.example.com" else ["by-id", "other"]

    monitor = Monitor("/nonexistent", session=None, peers_at=peers_at)
    for event in LINES["remote-id-v2/remote-initiates"]:
        monitor._log_line(event)
    assert seen == [("192.0.2.2", ""), ("192.0.2.2", "branch.example.com")]
    assert any("no matching peer config" in line.text for line in monitor.log_lines("by-id"))
    assert not any("no matching peer config" in line.text for line in monitor.log_lines("other"))
    assert any("is initiating an IKE_SA" in line.text for line in monitor.log_lines("other"))
    assert "other" not in monitor.snapshot(polled=False).tunnels  # the reason is by-id's alone
