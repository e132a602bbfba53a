"""The configuration for the other side of a peer: what its administrator enters, never the PSK.

Pure: a peer in, text out. The settings are this router's own connection seen from the far end
(`vici_messages.mirror`: addresses, IDs and networks swapped) and its own proposal builders, so
what the other side is told is exactly what this router will offer and accept.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from webui.drivers import vici_messages
from webui.drivers.swanctl_conf import section
from webui.peers import AEAD, ALGORITHMS, ANY_GATEWAY, Peer

# What the other side's key line says instead of the key: the key never leaves this router.
PSK_PLACEHOLDER = "<the pre-shared key you agreed with this router's administrator>"
# Who starts the tunnel on the other side, by this router's own start action. The other side
# always keeps a tunnel this router starts, or waits for, coming back by itself: once this router
# has spent its keying tries (a branch that was off for an hour, say), a branch that only answered
# would leave both ends waiting. See `other_side` for why two ends that both start cannot loop.
_STARTS = {"start": "yes, at once, and keep trying until it is up: this router starts it too",
           "none": "yes, at once, and keep trying until it is up: this router only answers",
           "trap": "when traffic needs it (or at once and keep it up)"}
# The address this router calls the other side by may be a NAT's or a DNS name, not one its
# interfaces hold: it listens on any (%any) and is still known by its ID.
REMOTE_LOCAL_ADDRS = ["%any"]


@dataclass(frozen=True)
class RemoteConfig:
    """The other side's settings as a swanctl.conf snippet and as a plain list of (setting, value)."""

    name: str
    swanctl: str
    settings: tuple[tuple[str, str], ...]


def other_side(peer: Peer) -> tuple[Peer, dict]:
    """The other side's peer and its `load-conn` message (what the swanctl snippet says).

    A side that starts the tunnel there keeps trying forever (keyingtries = 0) and restarts it
    when dead peer detection finds this router gone. When this router starts it too, both ends
    may initiate at once (both booting, or this router's retry meeting the branch's next try):
    - one after the other, the later is a new IKE SA for the same IDs, and the branch closes the
      older (unique = replace; charon applies it when it answers);
    - at the same moment, each end answers the other before its own is up, no uniqueness policy
      applies, and two IKE SAs stand: this router's monitor closes the older after a grace
      (Monitor._close_duplicates).
    None of that can loop: on both ends a closed tunnel stays closed (close_action = none), so
    closing a duplicate starts nothing. A negotiation starts only from a start, a dead peer (DPD:
    an IKE SA that stopped answering) or this router's backoff (no IKE SA at all). A deliberate
    Disconnect here is not fought either: the branch sees a DELETE, not a dead peer.
    """
    remote = vici_messages.mirror(peer, psk="")
    if peer.start_action in ("start", "none"):
        remote = replace(remote, start_action="start", dpd_action="restart")
    conn = vici_messages.load_conn(remote)
    conn[remote.name]["local_addrs"] = REMOTE_LOCAL_ADDRS
    if remote.start_action == "start":
        conn[remote.name]["keyingtries"] = "0"
        settings = list(conn[remote.name].items())
        at = [key for key, _ in settings].index("send_certreq")
        conn[remote.name] = dict(settings[:at] + [("unique", "replace")] + settings[at:])
    return remote, conn


def for_other_side(peer: Peer) -> RemoteConfig:
    remote, conn = other_side(peer)
    text = "\n".join(section("connections", conn) + [""] + section("secrets", _secret(remote)))
    return RemoteConfig(name=peer.name, swanctl=text + "\n", settings=_settings(peer, remote))


def _secret(remote: Peer) -> dict:
    return {f"ike-{remote.name}": {"id-1": remote.effective_local_id,
                                   "id-2": remote.effective_peer_id,
                                   "secret": PSK_PLACEHOLDER}}


def _settings(peer: Peer, remote: Peer) -> tuple[tuple[str, str], ...]:
    """The same settings in words, for a box that is not strongSwan."""
    address = ("any: this router accepts you from whatever address you have" if remote.local_ip
               == ANY_GATEWAY else remote.local_ip)
    return (
        ("Key exchange", f"IKEv{remote.ike_version}"
                         + (", aggressive mode" if remote.aggressive and remote.ike_version == 1 else "")),
        ("Your address (as this router reaches it)", address),
        ("Peer gateway (this router)", remote.remote_gateway),
        ("Your ID (local)", remote.effective_local_id),
        ("Peer ID (this router)", remote.effective_peer_id),
        ("Your networks (local)", ", ".join(remote.local_networks)),
        ("Peer networks (remote)", ", ".join(remote.remote_networks)),
        ("IKE proposals", ", ".join(vici_messages.ike_proposals(remote))),
        ("ESP proposals", ", ".join(vici_messages.esp_proposals(remote))),
    ) + _algorithms(remote) + (
        ("Authentication", "pre-shared key (agree it out of band; it is not shown here)"),
        ("Mode", "tunnel"),
        ("Start the tunnel", _STARTS.get(peer.start_action, remote.start_action)),
        ("Dead peer detection", f"every {remote.dpd_delay} s" if remote.dpd_delay else "off"),
        ("IKE SA lifetime", _lifetime(remote.ike_rekey_time) + (
            ", reauthenticate" if remote.ike_reauth or remote.ike_version == 1 else
            f", rekey; reauthenticate every {vici_messages.REAUTH_TIME}")),
        ("Tunnel (CHILD SA) lifetime", _lifetime(remote.child_rekey_time)),
        ("UDP encapsulation (NAT-T)", "forced, even without NAT" if remote.encap
                                      else "when NAT is detected"),
    ) + ((("A second IKE SA with this router",
            "keep the newer, close the older (strongSwan: unique = replace)"),)
          if remote.start_action == "start" else ()) + (
        (("MOBIKE", "off"),) if remote.disable_mobike and remote.ike_version == 2 else ()) + (
        (("IKE fragmentation", remote.fragmentation),) if remote.fragmentation != "yes" else ())


# IANA's Diffie-Hellman group numbers: what FortiGate, Cisco and pfSense ask for.
DH_GROUP_NUMBERS = {"modp1024": 2, "modp1536": 5, "modp2048": 14, "modp3072": 15, "modp4096": 16,
                    "ecp256": 19, "ecp384": 20, "ecp521": 21, "curve25519": 31, "curve448": 32}
# HMAC integrity as other vendors name it: the hash and the truncated length on the wire.
HMAC_NAMES = {"sha1": "HMAC-SHA1-96", "sha256": "HMAC-SHA-256-128", "sha384": "HMAC-SHA-384-192",
              "sha512": "HMAC-SHA-512-256"}


def _names(keywords) -> str:
    return ", ".join(ALGORITHMS[k].label + (" (16-byte ICV)" if k.endswith("gcm16") else "")
                     for k in keywords)


def _groups(keywords) -> str:
    named = [f"group {DH_GROUP_NUMBERS[k]} ({ALGORITHMS[k].label.replace(' (', ', ').rstrip(')')})"
             for k in keywords if k != "none"]
    return ", ".join(named + (["none (no PFS)"] if "none" in keywords else []))


def _algorithms(remote: Peer) -> tuple[tuple[str, str], ...]:
    """The proposals one algorithm a line, as a box that is not strongSwan asks for them (phase 1
    and phase 2 in IKEv1's words): encryption, integrity, PRF and DH group numbers apart."""
    ike_cbc = [c for c in remote.ike_encryption if c not in AEAD]
    esp_cbc = [c for c in remote.esp_encryption if c not in AEAD]
    ike_integrity = list(remote.ike_integrity) if ike_cbc else []
    # strongSwan's PRF follows the integrity algorithm; with AEAD alone it is PRF-HMAC-SHA-256.
    prfs = list(remote.ike_integrity) or ["sha256"]
    return (
        ("IKE (phase 1) encryption", _names(remote.ike_encryption)),
        ("IKE (phase 1) integrity", ", ".join(HMAC_NAMES[k] for k in ike_integrity)
         or "none: included in the AEAD cipher"),
        ("IKE (phase 1) PRF", ", ".join("PRF-" + HMAC_NAMES[k].rsplit("-", 1)[0] for k in prfs)),
        ("IKE (phase 1) DH groups", _groups(remote.ike_dh_groups)),
        ("ESP (phase 2) encryption", _names(remote.esp_encryption)),
        ("ESP (phase 2) integrity", ", ".join(HMAC_NAMES[k] for k in remote.esp_integrity)
         if esp_cbc else "none: included in the AEAD cipher"),
        ("ESP (phase 2) PFS groups", _groups(remote.esp_dh_groups)),
    )


def _lifetime(seconds: int) -> str:
    """Rekey time in seconds, and in hours or minutes when it is a whole number of them."""
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds} s ({seconds // size} {unit})"
    return f"{seconds} s"

