"""VICI messages for strongSwan: pure builders (peer -> message) and parsers (answer -> dataclasses).

Nothing here does I/O, so every message the driver sends is tested with plain dict equality.
Parsers are the bytes boundary: what comes out of them is `str`/`int` only.

Decisions the builders encode (the swanctl.conf(5) names in brackets):

- One IKE connection and one CHILD_SA per peer, both named after the peer, so a peer name is all the
  driver needs to load, unload, initiate and terminate it. IKEv2 carries several networks per side
  in that one CHILD_SA. IKEv1 negotiates exactly one subnet pair per CHILD_SA, so an IKEv1 peer with
  several networks gets one CHILD_SA per (local, remote) pair of the same address family, named
  `<peer>`, `<peer>-2`, `<peer>-3`, ... (see `child_selectors`).
- Addresses [local_addrs, remote_addrs]: the peer's local IP and remote gateway, passed as-is, so a
  gateway given as a DNS name is resolved by charon (again on every attempt), not by the UI.
- Authentication [local/remote auth=psk, id]: PSK with the two IDs (defaults: local IP and remote
  gateway). The key is loaded with `load-shared` under a deterministic `id` ("ike-webui-<name>") so
  `unload-shared` can remove exactly that key on delete or rename.
- Start action [start_action], the administrator's choice, by default `start`: a site-to-site
  router wants its tunnels up, not waiting for the first packet, and the UI should show a failing
  tunnel (wrong key, gateway down) as soon as it is saved. With `start`, a load-conn that replaces a
  connection renegotiates it, so edited networks take effect at once. The cost: after `keyingtries`
  failed attempts charon stops trying until Connect, Restart IPsec or an edit; set keying tries to 0
  (forever) for a link that must always come back by itself. `trap` (start on traffic) depends on
  the kernel raising acquires: strongSwan's userspace ESP (kernel-libipsec, the lab, some small
  routers) does not; 5.9.8 just logs "could not find an outbound IPsec SA ... dropping packet".
  `none` waits for the other side, and is the only choice for a remote gateway of "any" [%any].
- Dead peer detection [dpd_delay, default 30s; 0 = off]: both IKE versions (IKEv1 uses it for
  R-U-THERE; its timeout keeps charon's default). When it finds the peer dead [dpd_action, default
  restart] the tunnel is renegotiated at once. When the remote closes the CHILD_SA on purpose
  [close_action=none] we do not fight it: two ends that both restart on close can loop, and a remote
  that comes back initiates by itself.
- Lifetimes [rekey_time of the IKE SA and of each CHILD_SA, always sent, by default charon's own
  4 h and 1 h]: charon derives the hard lifetime (+10 %) and the jitter from them. An IKEv2 peer may
  reauthenticate instead of rekeying [reauth_time, rekey_time=0s]; IKEv1 always reauthenticates.
  Otherwise an IKEv2 SA is still reauthenticated every 6 h [reauth_time=6h]: rekeying keeps an IKE
  SA's authentication forever, so a key that was changed or leaked would keep a tunnel that never
  dropped up. Saving a new key (or IDs, addresses, IKE version) ends the old IKE SAs at once (the
  driver does it); this is the defence in depth behind that, at the cost of a short break.
- Encapsulation, MOBIKE, fragmentation, aggressive mode [encap, mobike, fragmentation,
  aggressive]: sent only when they differ from charon's defaults (no, yes, yes, no), MOBIKE only
  for IKEv2 and aggressive mode only for IKEv1, where they exist.
- Keying tries [keyingtries]: the peer's `keying_retries`, where 0 means forever, as in strongSwan.
- Proposals: strongSwan cannot mix AEAD (aes*gcm16, chacha20poly1305) and classic ciphers in one
  proposal, so each kind gets its own, in the order the administrator chose. An IKE AEAD proposal has
  no integrity algorithm but still needs a PRF: it takes prf<hash> from the chosen IKE integrity
  algorithms, or prfsha256 when none are chosen. A peer whose choices make no proposal (IKEv1 with
  AEAD for IKE, CBC without integrity, nothing chosen) is refused by webui/peers.py's rules, the
  form's own, with the field named. ESP DH group "none" means no PFS: a proposal without any DH
  group, offered after the PFS ones when both are chosen.
"""
from __future__ import annotations

import sys
from typing import Iterable, Mapping

from webui.drivers import ChildSA, CommandFailed, Connection, IkeSA, TunnelState
from webui.drivers.failure_reasons import failure_reason  # noqa: F401 - the driver's name for it
from webui.peers import AEAD, PROPOSAL_FIELDS, Peer, proposal_problems

CLOSE_ACTION = "none"
REAUTH_TIME = "6h"
# A shared key's VICI id is also its section name in the swanctl.conf the UI can write
# (webui/drivers/swanctl_conf.py), which swanctl requires to start with its type, "ike".
SHARED_ID_PREFIX = "ike-webui-"
LEGACY_SHARED_ID_PREFIX = "webui-psk-"  # before swanctl.conf: unloaded by the reconcile


class InvalidProposal(CommandFailed):
    """The peer's algorithms cannot make a proposal (webui/peers.py's rules, the form's words);
    `field` names the peer field at fault. Refused before charon is asked."""

    def __init__(self, message: str, field: str):
        super().__init__(message, field=field)


def check_proposals(peer: Peer, sides: tuple[str, ...] = ("esp", "ike")) -> None:
    """Raise InvalidProposal for the first rule the peer's algorithms break on `sides` (ESP
    first, as load_conn builds it)."""
    problems = proposal_problems(peer.ike_version, {f: getattr(peer, f) for f in PROPOSAL_FIELDS})
    for side in sides:
        for field, reason in problems.items():
            if field.startswith(side):
                raise InvalidProposal(reason, field)


# --- Builders ------------------------------------------------------------------------------------


def shared_key_id(name: str) -> str:
    return SHARED_ID_PREFIX + name


def _prfs(integrity: Iterable[str]) -> list[str]:
    return [f"prf{alg}" for alg in integrity] or ["prfsha256"]


def _split_aead(ciphers: Iterable[str]) -> list[tuple[bool, list[str]]]:
    """Ciphers grouped into (is_aead, [ciphers]) runs, ordered by each kind's first appearance."""
    groups: dict[bool, list[str]] = {}
    for cipher in ciphers:
        groups.setdefault(cipher in AEAD, []).append(cipher)
    return list(groups.items())


def ike_proposals(peer: Peer) -> list[str]:
    check_proposals(peer, ("ike",))
    proposals = []
    for aead, ciphers in _split_aead(peer.ike_encryption):
        middle = _prfs(peer.ike_integrity) if aead else list(peer.ike_integrity)
        proposals.append("-".join(ciphers + middle + list(peer.ike_dh_groups)))
    return proposals


def esp_proposals(peer: Peer) -> list[str]:
    check_proposals(peer, ("esp",))
    groups = [g for g in peer.esp_dh_groups if g != "none"]
    # Without PFS a proposal simply carries no DH group; with both chosen, PFS is preferred.
    dh_variants = ([groups] if groups else []) + ([[]] if "none" in peer.esp_dh_groups else [])
    proposals = []
    for aead, ciphers in _split_aead(peer.esp_encryption):
        middle = [] if aead else list(peer.esp_integrity)
        proposals.extend("-".join(ciphers + middle + dh) for dh in dh_variants)
    return proposals


def child_selectors(peer: Peer) -> list[tuple[str, list[str], list[str]]]:
    """(child name, local_ts, remote_ts) for each CHILD_SA of `peer`."""
    if peer.ike_version == 2:
        return [(peer.name, list(peer.local_networks), list(peer.remote_networks))]
    pairs = [(local, remote) for local in peer.local_networks for remote in peer.remote_networks
             if (":" in local) == (":" in remote)]
    return [(peer.name if i == 0 else f"{peer.name}-{i + 1}", [local], [remote])
            for i, (local, remote) in enumerate(pairs)]


def load_conn(peer: Peer) -> dict:
    """The `load-conn` message for `peer`: {name: {...}}."""
    proposals = esp_proposals(peer)
    children = {
        name: {
            "mode": "tunnel",
            "local_ts": local_ts,
            "remote_ts": remote_ts,
            "esp_proposals": proposals,
            "rekey_time": f"{peer.child_rekey_time}s",
            "start_action": peer.start_action,
            "dpd_action": peer.dpd_action,
            "close_action": CLOSE_ACTION,
        }
        for name, local_ts, remote_ts in child_selectors(peer)
    }
    conn = {
        "version": str(peer.ike_version),
        "local_addrs": [peer.local_ip],
        "remote_addrs": [peer.remote_gateway],
        "proposals": ike_proposals(peer),
        "keyingtries": str(peer.keying_retries),
        "dpd_delay": f"{peer.dpd_delay}s",
        **ike_lifetimes(peer),
        **_differing_options(peer),
        "send_certreq": "no",  # PSK only: asking for certificates just bloats the exchange
        "local": {"auth": "psk", "id": peer.effective_local_id},
        "remote": {"auth": "psk", "id": peer.effective_peer_id},
        "children": children,
    }
    return {peer.name: conn}


def ike_lifetimes(peer: Peer) -> dict:
    """IKE SA rekeying or, for an IKEv2 peer that asks for it, reauthentication instead."""
    if peer.ike_reauth and peer.ike_version == 2:
        return {"rekey_time": "0s", "reauth_time": f"{peer.ike_rekey_time}s"}
    if peer.ike_version == 2:
        return {"rekey_time": f"{peer.ike_rekey_time}s", "reauth_time": REAUTH_TIME}
    return {"rekey_time": f"{peer.ike_rekey_time}s"}


def _differing_options(peer: Peer) -> dict:
    options = {}
    if peer.encap:
        options["encap"] = "yes"
    if peer.disable_mobike and peer.ike_version == 2:
        options["mobike"] = "no"
    if peer.fragmentation != "yes":
        options["fragmentation"] = peer.fragmentation
    if peer.aggressive and peer.ike_version == 1:
        options["aggressive"] = "yes"
    return options


def load_shared(peer: Peer) -> dict:
    """The `load-shared` message with the peer's PSK, owned by both IDs."""
    return {
        "id": shared_key_id(peer.name),
        "type": "IKE",
        "data": peer.psk,
        "owners": [peer.effective_local_id, peer.effective_peer_id],
    }


def sa_settings(peer: Peer) -> list:
    """What an established IKE SA was authenticated with: when any of it changes, SAs made under
    the old values must go (a new key must lock out the old one)."""
    return [peer.psk, peer.effective_local_id, peer.effective_peer_id, peer.local_ip,
            peer.remote_gateway, peer.ike_version]


# Who starts the tunnel, seen from the other side: a peer this router starts waits for it there
# (two ends starting at once negotiate twice for nothing); one this router waits for is started
# there; a peer started by traffic is started by traffic on both sides.
MIRRORED_START_ACTIONS = {"start": "none", "none": "start", "trap": "trap"}


def mirror(peer: Peer, psk: str | None = None) -> Peer:
    """The peer as the remote site sees it: addresses, IDs and networks swapped, and who starts
    the tunnel turned around (for the lab and the other side's configuration)."""
    from dataclasses import replace
    start_action = MIRRORED_START_ACTIONS.get(peer.start_action, "none")
    return replace(peer, local_ip=peer.remote_gateway, remote_gateway=peer.local_ip,
                   local_id=peer.effective_peer_id, peer_id=peer.effective_local_id,
                   local_networks=peer.remote_networks, remote_networks=peer.local_networks,
                   psk=peer.psk if psk is None else psk, start_action=start_action,
                   # a side that starts the tunnel brings it back itself after DPD finds it dead
                   dpd_action="restart" if start_action == "start" else peer.dpd_action)


# --- Parsers -------------------------------------------------------------------------------------


def text(value) -> str:
    """A value of a decoded answer (bytes, or None when absent) as text."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _word(value) -> str:
    """A value many SAs share (a state, an algorithm, an address, a network): one string for all
    of them, not one per SA in the monitor's snapshot."""
    return sys.intern(text(value))


def _int(value) -> int | None:
    try:
        return int(text(value))
    except ValueError:
        return None


def _texts(values) -> tuple[str, ...]:
    return tuple(text(v) for v in values or ())


def _words(values) -> tuple[str, ...]:
    return tuple(_word(v) for v in values or ())


def _algorithm(sa: Mapping, name: str) -> str:
    """'AES_GCM_16' + keysize '256' -> 'AES_GCM_16-256', as swanctl shows it."""
    alg = _word(sa.get(f"{name}-alg"))
    size = text(sa.get(f"{name}-keysize"))
    return sys.intern(f"{alg}-{size}") if alg and size else alg


def parse_child(name: str, child: Mapping) -> ChildSA:
    # The key of a child-sas entry is "<name>-<uniqueid>" in recent charons; `name` holds the config's.
    return ChildSA(
        name=_word(child.get("name")) or name,
        state=_word(child.get("state")),
        mode=_word(child.get("mode")),
        protocol=_word(child.get("protocol")),
        encap=text(child.get("encap")) == "yes",
        encryption=_algorithm(child, "encr"),
        integrity=_algorithm(child, "integ"),
        dh_group=_word(child.get("dh-group")),
        local_ts=_words(child.get("local-ts")),
        remote_ts=_words(child.get("remote-ts")),
        bytes_in=_int(child.get("bytes-in")) or 0,
        bytes_out=_int(child.get("bytes-out")) or 0,
        packets_in=_int(child.get("packets-in")) or 0,
        packets_out=_int(child.get("packets-out")) or 0,
        installed_for=_int(child.get("install-time")),
        rekey_in=_int(child.get("rekey-time")),
        life_in=_int(child.get("life-time")),
        spi_in=text(child.get("spi-in")),
        spi_out=text(child.get("spi-out")),
        unique_id=_int(child.get("uniqueid")) or 0,
    )


def parse_ike_sa(name: str, sa: Mapping) -> IkeSA:
    children = tuple(parse_child(text(key), child)
                     for key, child in (sa.get("child-sas") or {}).items())
    return IkeSA(
        name=name,
        unique_id=_int(sa.get("uniqueid")) or 0,
        state=_word(sa.get("state")),
        version=_int(sa.get("version")) or 0,
        local_host=_word(sa.get("local-host")),
        remote_host=_word(sa.get("remote-host")),
        local_id=_word(sa.get("local-id")),
        remote_id=_word(sa.get("remote-id")),
        initiator=text(sa.get("initiator")) == "yes",
        encryption=_algorithm(sa, "encr"),
        integrity=_algorithm(sa, "integ"),
        prf=_word(sa.get("prf-alg")),
        dh_group=_word(sa.get("dh-group")),
        established_for=_int(sa.get("established")),
        rekey_in=_int(sa.get("rekey-time")),
        reauth_in=_int(sa.get("reauth-time")),
        children=children,
        nat_local=text(sa.get("nat-local")) == "yes",
        nat_remote=text(sa.get("nat-remote")) == "yes",
        nat_forced=text(sa.get("nat-fake")) == "yes",
    )


def parse_sas(events: Iterable[Mapping]) -> tuple[IkeSA, ...]:
    """`list-sas` events ({name: sa} each) -> IKE SAs, in the order charon streamed them."""
    return tuple(parse_ike_sa(text(name), sa) for event in events for name, sa in event.items())


_VERSIONS = {"IKEv1": "IKEv1", "IKEv2": "IKEv2", "0": "IKEv1/2"}


def parse_conns(events: Iterable[Mapping], managed: Iterable[str] = ()) -> tuple[Connection, ...]:
    """`list-conns` events -> connections; those named in `managed` were loaded by this UI."""
    managed = set(managed)
    conns = []
    for event in events:
        for key, conn in event.items():
            name = text(key)
            version = text(conn.get("version"))
            conns.append(Connection(
                name=name, version=_VERSIONS.get(version, version),
                local_addrs=_texts(conn.get("local_addrs")),
                remote_addrs=_texts(conn.get("remote_addrs")),
                children=tuple(text(c) for c in (conn.get("children") or {})),
                managed=name in managed))
    return tuple(conns)


# strongSwan's names in `get-algorithms` for each catalogue keyword ("none", no PFS, needs nothing).
_IMPLEMENTED_BY = {
    "aes256gcm16": ("aead", "AES_GCM_16"),
    "aes128gcm16": ("aead", "AES_GCM_16"),
    "chacha20poly1305": ("aead", "CHACHA20_POLY1305"),
    "aes256": ("encryption", "AES_CBC"),
    "aes128": ("encryption", "AES_CBC"),
    "3des": ("encryption", "3DES_CBC"),
    "sha256": ("integrity", "HMAC_SHA2_256_128"),
    "sha384": ("integrity", "HMAC_SHA2_384_192"),
    "sha512": ("integrity", "HMAC_SHA2_512_256"),
    "sha1": ("integrity", "HMAC_SHA1_96"),
    "curve25519": ("dh", "CURVE_25519"),
    "ecp256": ("dh", "ECP_256"),
    "ecp384": ("dh", "ECP_384"),
    "modp4096": ("dh", "MODP_4096"),
    "modp3072": ("dh", "MODP_3072"),
    "modp2048": ("dh", "MODP_2048"),
    "modp1024": ("dh", "MODP_1024"),
}


def parse_algorithms(answer: Mapping) -> frozenset[str]:
    """`get-algorithms` -> the catalogue keywords charon can honour."""
    loaded = {text(kind): {text(name) for name in (algs or {})} for kind, algs in answer.items()}
    loaded.setdefault("dh", set()).update(loaded.get("ke", ()))  # strongSwan 6 says "ke"
    supported = {kw for kw, (kind, name) in _IMPLEMENTED_BY.items() if name in loaded.get(kind, ())}
    return frozenset(supported | {"none"})


# --- Tunnel state --------------------------------------------------------------------------------

_UP_IKE = {"ESTABLISHED", "REKEYING", "REKEYED"}
_UP_CHILD = {"INSTALLED", "REKEYING", "REKEYED", "UPDATING"}


def tunnel_states(events: Iterable[Mapping], loaded: Iterable[str],
                  failures: Mapping[str, str]) -> dict[str, TunnelState]:
    """`list-sas` events -> per connection name: up (an installed child), connecting (an SA on its
    way), or down. It reads only the handful of keys a status cell shows, straight from the
    events, without `parse_sas`'s full picture: every status poll runs it over every SA charon has.
    """
    seen: set[str] = set()
    up: dict[str, tuple[int, int, int]] = {}  # name -> (established for, bytes in, bytes out)
    for event in events:
        for key, sa in event.items():
            name = text(key)
            seen.add(name)
            if text(sa.get("state")) not in _UP_IKE:
                continue
            for child in (sa.get("child-sas") or {}).values():
                if text(child.get("state")) in _UP_CHILD:
                    established, bytes_in, bytes_out = up.get(name, (0, 0, 0))
                    up[name] = (max(established, _int(sa.get("established")) or 0),
                                bytes_in + (_int(child.get("bytes-in")) or 0),
                                bytes_out + (_int(child.get("bytes-out")) or 0))
    loaded = set(loaded)
    states = {}
    for name in seen | loaded | set(failures):
        if name in up:
            established, bytes_in, bytes_out = up[name]
            states[name] = TunnelState(name=name, state="up", loaded=name in loaded,
                                       established_for=established, bytes_in=bytes_in,
                                       bytes_out=bytes_out)
        else:
            states[name] = TunnelState(name=name, state="connecting" if name in seen else "down",
                                       loaded=name in loaded, reason=failures.get(name, ""))
    return states
