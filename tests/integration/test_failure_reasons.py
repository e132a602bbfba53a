"""Issue 10: the reason, not the symptom. Each failure reason (webui/drivers/failure_reasons.py) is
matched against a line the lab's real charon logged, produced by really misconfiguring the lab that
way: the router initiates, and the lines are the router's own (the `control-log` of its initiate,
what the UI reads) or the remote's (its log file: what a router logs when it is the responder).
"""
from __future__ import annotations

import re
import time
from dataclasses import replace

import pytest

from tests.integration.conftest import peer_form, wait_for
from tests.integration.test_app_ipsec import as_peer, cell
from webui.drivers import DriverError, strongswan
from webui.drivers import vici_messages as vm
from webui.drivers.failure_reasons import REASONS, failure_reason
from tests.lab import MINIMAL_PLUGINS
from webui.peers import Peer

PEER = Peer(name="reason", local_ip="192.0.2.1", remote_gateway="192.0.2.2",
            local_networks=("198.51.100.0/24",), remote_networks=("203.0.113.0/24",),
            psk="reasons-are-tested-for-real-42")
V1 = replace(PEER, ike_version=1)
WRONG_KEY = "not-the-routers-key-at-all-17"
LIBIPSEC_FREE = MINIMAL_PLUGINS.replace("kernel-libipsec ", "").replace("random", "random openssl gcm")
# Nobody answers there (and no other test uses it: the router's neighbour table remembers it).
SILENT_GATEWAY = "192.0.2.250"
QUICK_RETRANSMITS = "retransmit_tries = 2\n  retransmit_timeout = 0.3\n  retransmit_base = 1.2"


def attempt(lab, peer: Peer, remote: Peer | None | bool = None, remote_psk: str | None = None,
            without_remote_key: bool = False) -> tuple[list[str], list[str]]:
    """Load `peer` into the router as charon would take it from swanctl.conf (as is: no filtering),
    `remote` (default: the mirror of `peer`; False: nothing) into the remote, initiate, and return
    (the router's control-log lines, the remote's new log lines)."""
    remote_log = lab.charon_log("remote")
    start = remote_log.stat().st_size
    if remote is not False:
        lab.load_remote_mirror(remote or peer, psk=remote_psk)
        if without_remote_key:
            strongswan.call(lab.remote_vici, "unload-shared",
                            {"id": vm.shared_key_id((remote or peer).name)})
    conn = vm.load_conn(peer)
    for child in conn[peer.name]["children"].values():
        child["start_action"] = "none"
    strongswan.call(lab.router_vici, "load-shared", vm.load_shared(peer))
    strongswan.call(lab.router_vici, "load-conn", conn)
    router_lines = []
    try:
        with strongswan.session(lab.router_vici, 20) as vs:
            for event in strongswan.events(vs, "initiate", "control-log",
                                           {"child": peer.name, "ike": peer.name, "timeout": 15000}):
                router_lines.append(vm.text(event.get("msg")))
    except DriverError:
        pass  # the failure is the point
    time.sleep(0.2)  # the remote's file log is flushed per line; let its last lines land
    remote_lines = [line.split("] ", 1)[-1] for line in
                    remote_log.read_bytes()[start:].decode(errors="replace").splitlines()]
    return router_lines, remote_lines


def reason_shown(router_lines: list[str]) -> str | None:
    """What the UI shows for the attempt: the last reason the router's log gave (driver.connect)."""
    reasons = [r for r in map(failure_reason, router_lines) if r]
    return reasons[-1] if reasons else None


def the_line(lines: list[str], text: str) -> str:
    found = [line for line in lines if text in line]
    assert found, f"charon logged no line with {text!r}:\n" + "\n".join(lines)
    return found[0]


# (id, how the lab is misconfigured, whose log, a line charon logs, the reason for it)
CASES = [
    ("dh-group-not-supported", dict(plugins=MINIMAL_PLUGINS), "router",
     "configured DH group CURVE_25519 not supported",
     "this strongSwan does not support DH group CURVE_25519 (a plugin is missing)"),
    ("invalid-ke-payload", dict(plugins=MINIMAL_PLUGINS,
                                peer=replace(PEER, ike_dh_groups=("modp2048", "ecp256"),
                                             esp_encryption=("aes256",), esp_integrity=("sha256",),
                                             esp_dh_groups=("modp2048",)),
                                remote=replace(PEER, ike_dh_groups=("ecp256",),
                                               esp_encryption=("aes256",), esp_integrity=("sha256",),
                                               esp_dh_groups=("modp2048",))), "router",
     "peer didn't accept DH group MODP_2048, it requested ECP_256",
     "the remote wants DH group ECP_256, not MODP_2048 (INVALID_KE_PAYLOAD)"),
    ("invalid-ke-payload-requested-group-missing", "invalid-ke-payload", "router",
     "requested DH group ECP_256 not supported",
     "the remote insists on DH group ECP_256, which this strongSwan does not support "
     "(a plugin is missing)"),
    ("invalid-ke-payload-responder", "invalid-ke-payload", "remote",
     "DH group MODP_2048 unacceptable, requesting ECP_256",
     "the remote offered DH group MODP_2048; this end asked for ECP_256 (INVALID_KE_PAYLOAD)"),
    ("wrong-psk", dict(remote_psk=WRONG_KEY), "router",
     "received AUTHENTICATION_FAILED notify error",
     "authentication failed: the remote refused it (the keys differ, or it expects other IDs)"),
    ("wrong-psk-responder", "wrong-psk", "remote", "but MAC mismatched",
     "authentication failed (the pre-shared keys differ)"),
    ("wrong-psk-ikev1", dict(peer=V1, remote_psk=WRONG_KEY), "router", "decryption failed",
     "authentication failed (the pre-shared keys differ)"),
    ("no-shared-key-responder", dict(without_remote_key=True), "remote", "no shared key found",
     "authentication failed (no pre-shared key for the IDs '192.0.2.2' - '192.0.2.1')"),
    ("no-matching-peer-config", dict(peer=replace(PEER, local_id="wrong.example"), remote=PEER),
     "remote", "no matching peer config found",
     "no connection here matches the remote's IDs (check local and peer ID on both sides)"),
    ("no-peer-config-ikev1", dict(peer=replace(V1, local_id="wrong.example"), remote=V1),
     "remote", "no peer config found",
     "no connection here matches the remote's IDs (check local and peer ID on both sides)"),
    ("no-ike-config", dict(remote=False), "remote", "no IKE config found for",
     "no connection here for the addresses 192.0.2.2...192.0.2.1"),
    ("no-ike-config-initiator", "no-ike-config", "router", "received NO_PROPOSAL_CHOSEN notify error",
     "no matching proposal (the two sides' algorithms differ, or the remote has no connection "
     "for this router's address)"),
    ("ike-proposal-mismatch", dict(remote=replace(PEER, ike_dh_groups=("modp2048",))), "remote",
     "received proposals unacceptable", "no matching proposal (the two sides' algorithms differ)"),
    ("esp-proposal-mismatch", dict(remote=replace(PEER, esp_encryption=("aes128",),
                                                  esp_integrity=("sha1",))), "remote",
     "no acceptable proposal found", "no matching proposal (the two sides' algorithms differ)"),
    ("ikev1-proposal-mismatch", dict(peer=replace(V1, ike_dh_groups=("modp2048",)), remote=V1),
     "remote", "no proposal found", "no matching proposal (the two sides' algorithms differ)"),
    ("wrong-remote-id-ikev1", dict(peer=V1, remote=replace(V1, peer_id="branch.example.com")),
     "router", "does not match to",
     "the IDs do not match: the remote presented branch.example.com, this peer expects 192.0.2.2"),
    ("networks-mismatch-ikev1", dict(peer=V1, remote=replace(V1, remote_networks=("10.99.0.0/24",))),
     "router", "INVALID_ID_INFORMATION",
     "the remote refused the networks (traffic selectors) or the ID (INVALID_ID_INFORMATION)"),
    ("networks-mismatch-ikev1-responder", "networks-mismatch-ikev1", "remote",
     "no matching CHILD_SA config found",
     "the networks the remote asked for (203.0.113.0/24 here, 198.51.100.0/24 there) do not "
     "match this peer's (traffic selectors)"),
    ("networks-mismatch", dict(remote=replace(PEER, remote_networks=("10.99.0.0/24",))), "router",
     "TS_UNACCEPTABLE", "the remote did not accept the networks (traffic selectors)"),
    ("networks-mismatch-responder", "networks-mismatch", "remote", "unacceptable",
     "the networks the remote asked for (203.0.113.0/24 here, 198.51.100.0/24 there) do not "
     "match this peer's (traffic selectors)"),
    ("sa-not-installed", dict(plugins=LIBIPSEC_FREE), "router",
     "unable to install inbound and outbound IPsec SA (SAD) in kernel",
     "the tunnel's keys could not be installed in the kernel (does it have ESP and XFRM?)"),
    ("aead-not-supported", dict(plugins=MINIMAL_PLUGINS,
                                peer=replace(PEER, ike_dh_groups=("modp2048",),
                                             esp_dh_groups=("modp2048",))), "router",
     "unsupported AEAD algorithm AES_GCM_16",
     "this strongSwan cannot do AES_GCM_16 for the tunnel (a plugin is missing)"),
    ("name-not-resolved", dict(peer=replace(PEER, remote_gateway="nonexistent.invalid"),
                               remote=False), "router", "unable to resolve nonexistent.invalid",
     "the remote gateway's name nonexistent.invalid cannot be resolved"),
    ("retransmits-given-up", dict(peer=replace(PEER, remote_gateway=SILENT_GATEWAY,
                                               keying_retries=1), remote=False,
                                  settings=QUICK_RETRANSMITS), "router", "giving up after",
     "the remote gateway is not responding"),
    ("peer-not-responding", "retransmits-given-up", "router",
     "establishing IKE_SA failed, peer not responding", "the remote gateway is not responding"),
]
SETUPS = {case[0]: case[1] for case in CASES if isinstance(case[1], dict)}


@pytest.fixture(scope="module")
def logs(lab):
    """Each misconfiguration tried once on the real lab; its log lines, by setup id."""
    seen = {}
    for number, (name, setup) in enumerate(SETUPS.items()):
        lab.reset()
        setup = dict(setup)
        plugins, settings = setup.pop("plugins", False), setup.pop("settings", "")
        if plugins is not False or settings:
            lab.restart_router_charon(plugins, settings)
        # A name of its own each time, so no IKE_SA of an earlier case is reused.
        unique = f"reason{number}"
        peer = replace(setup.pop("peer", PEER), name=unique)
        remote = setup.pop("remote", None)
        remote = replace(remote, name=unique) if remote else remote
        seen[name] = attempt(lab, peer, remote, **setup)
    lab.reset()
    lab.exec("router", ["ip", "neigh", "flush", "to", SILENT_GATEWAY])
    return seen


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_the_reason_for_a_real_log_line(logs, case):
    name, setup, whose, text, reason = case
    router_lines, remote_lines = logs[setup if isinstance(setup, str) else name]
    line = the_line(router_lines if whose == "router" else remote_lines, text)
    assert failure_reason(line) == reason, line


@pytest.mark.parametrize("setup", list(SETUPS))
def test_the_router_always_has_a_reason_not_just_the_symptom(logs, setup):
    """vici says only "establishing CHILD_SA 'x' failed"; the router's own log says why."""
    router_lines, _ = logs[setup]
    assert reason_shown(router_lines), "\n".join(router_lines)


def test_every_reason_has_a_case_here():
    def produces(template: str, reason: str | None) -> bool:
        pattern = re.sub(r"\\\{\w+\\\}", ".+", re.escape(template))
        return reason is not None and re.fullmatch(pattern, reason) is not None

    tested = [reason for *_, reason in CASES]
    untested = [template for _, template in REASONS
                if not any(produces(template, reason) for reason in tested)]
    # The lab cannot produce this one: its kernel takes any policy.
    assert untested == ["the tunnel's policies could not be installed in the kernel"]


def test_connect_shows_the_reason_and_not_vicis_generic_failure(live, clean_lab):
    """Through the app: a peer whose remote has no connection for it, then Connect."""
    browser = live.browser()
    form = peer_form(keying_retries="1")
    page = browser.post("/peers", form, htmx=True)  # no mirror loaded on the remote
    assert page.status == 204, page.text[:500]
    shown = wait_for(lambda: "the remote has no connection" in cell(browser, "site-b")["text"])
    assert shown, cell(browser, "site-b")
    assert "establishing CHILD_SA" not in cell(browser, "site-b")["text"]
    answer = browser.post("/peers/site-b/connect", htmx=True).text
    assert "did not come up: no matching proposal" in answer, answer
    assert "the remote has no connection for this router" in answer
    assert "establishing CHILD_SA" not in answer
