"""Why a tunnel is down, and what to change: charon's lines about a peer -> plain-words findings.

Pure: `explain(peer, lines)` reads the lines of the peer's last failed negotiation (one IKE SA,
as charon numbers them) and says what went wrong with the values charon logged, next to the form
field to change. What this side can know depends on who started the negotiation: as the
responder, charon logs what the remote offered (its proposals, its ID, its networks); as the
initiator, only the remote's refusal. Each finding says which, and never guesses the rest.
Every value here may come from the remote's messages: the templates escape them (autoescape).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from wtforms.validators import ValidationError

from webui.drivers import LogLine
from webui.drivers.vici_messages import esp_proposals, ike_proposals
from webui.forms import MAX_CHARS, check_identity
from webui.peers import ALGORITHMS, Peer

# charon's transform names -> the catalogue's keywords (webui/peers.py)
_KEYWORDS = {
    "AES_CBC_256": "aes256", "AES_CBC_128": "aes128", "3DES_CBC": "3des",
    "AES_GCM_16_256": "aes256gcm16", "AES_GCM_16_128": "aes128gcm16",
    "CHACHA20_POLY1305_256": "chacha20poly1305", "CHACHA20_POLY1305": "chacha20poly1305",
    "HMAC_SHA2_256_128": "sha256", "HMAC_SHA2_384_192": "sha384",
    "HMAC_SHA2_512_256": "sha512", "HMAC_SHA1_96": "sha1",
    "MODP_1024": "modp1024", "MODP_2048": "modp2048", "MODP_3072": "modp3072",
    "MODP_4096": "modp4096", "ECP_256": "ecp256", "ECP_384": "ecp384",
    "CURVE_25519": "curve25519",
}
# What each transform of a proposal is, by the start of its name; PRFs follow the integrity
# algorithm here (the form has no field for them) and sequence numbers are not a choice.
_KINDS = (("PRF_", None), ("NO_EXT_SEQ", None), ("EXT_SEQ", None), ("HMAC_", "integrity"),
          ("AES_XCBC", "integrity"), ("AES_CMAC", "integrity"), ("MODP_", "dh"), ("ECP_", "dh"),
          ("CURVE_", "dh"), ("X25519", "dh"), ("X448", "dh"), ("", "encryption"))
DIMENSIONS = (("encryption", "Encryption"), ("integrity", "Integrity"), ("dh", "DH group"))
_FIELD_WORDS = {"encryption": "encryption", "integrity": "integrity", "dh": "DH groups"}


@dataclass(frozen=True)
class Proposal:
    """One proposal as charon logged it, split by what each transform is."""

    protocol: str  # IKE or ESP
    encryption: tuple[str, ...] = ()
    integrity: tuple[str, ...] = ()
    dh: tuple[str, ...] = ()

    @property
    def aead(self) -> bool:
        return any("GCM" in a or "CCM" in a or "POLY1305" in a for a in self.encryption)


@dataclass(frozen=True)
class Finding:
    kind: str  # proposals, ids, key, networks, reachability
    title: str
    text: str  # what happened, with the values
    change: str = ""  # the smallest change on this side, when there is one
    ask: str = ""  # what to ask of the other side instead
    fields: tuple[str, ...] = ()  # the peer form's fields to change (their ids)
    # proposals: rows of (what, the remote offers, this peer has, both share), in words
    table: tuple[tuple[str, str, str, str], ...] = ()
    who: str = ""  # "we" when this router started the negotiation, else the remote's address
    at: float = 0.0
    lines: tuple[str, ...] = field(default=(), compare=False)  # the lines it was read from
    # (field, when) the admin changed here shortly before: the tunnel failed after it, and was
    # not up in between (ids and key findings: the log cannot tell a wrong ID from a wrong key)
    changed: tuple[tuple[str, float], ...] = ()


def label(name: str) -> str:
    """A charon transform name in the form's words: AES_CBC_128 -> AES-128-CBC (weak tagged)."""
    keyword = _KEYWORDS.get(name)
    if keyword is None:
        return name
    algorithm = ALGORITHMS[keyword]
    return f"{algorithm.label} (weak)" if algorithm.weak else algorithm.label


def _keyword_label(keyword: str) -> str:
    algorithm = ALGORITHMS.get(keyword)
    if algorithm is None:
        return keyword
    return f"{algorithm.label} (weak)" if algorithm.weak else algorithm.label


def parse_proposals(text: str) -> list[Proposal]:
    """"IKE:AES_CBC_128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024, IKE:..." -> proposals."""
    found = []
    for item in text.split(", "):
        protocol, _, transforms = item.strip().partition(":")
        parts: dict[str, list[str]] = {"encryption": [], "integrity": [], "dh": []}
        for name in transforms.split("/"):
            kind = next(k for prefix, k in _KINDS if name.startswith(prefix))
            if kind and name:
                parts[kind].append(name)
        found.append(Proposal(protocol, *(tuple(parts[d]) for d, _ in DIMENSIONS)))
    return found


def _fields_of(protocol: str) -> dict[str, str]:
    prefix = "ike" if protocol == "IKE" else "esp"
    return {"encryption": f"{prefix}_encryption", "integrity": f"{prefix}_integrity",
            "dh": f"{prefix}_dh_groups"}


def _configured(peer: Peer, protocol: str) -> dict[str, set[str]]:
    """The peer's algorithms, as catalogue keywords, for IKE or ESP."""
    names = _fields_of(protocol)
    return {d: {a for a in getattr(peer, names[d]) if a != "none"} for d, _ in DIMENSIONS}


def _additions(offer: Proposal, ours: dict[str, set[str]], pfs_counts: bool
               ) -> list[tuple[str, str]] | None:
    """(dimension, keyword) to add to this peer so that it accepts `offer`; None when the
    catalogue has nothing of `offer` for some dimension (no change here can match it)."""
    needed = []
    for dim, _ in DIMENSIONS:
        offered = [_KEYWORDS.get(name) for name in getattr(offer, dim)]
        if dim == "integrity" and offer.aead:
            continue  # an AEAD cipher carries its own integrity
        if dim == "dh" and not offered:
            if not pfs_counts:
                continue  # IKEv2's first CHILD_SA: charon skips its DH group
            if offer.protocol == "ESP":
                continue  # no PFS offered: "None" is a choice only next to no group
        if any(k in ours[dim] for k in offered if k):
            continue
        known = [k for k in offered if k]
        if not known:
            return None
        needed.append((dim, known[0]))
    return needed


def smallest_change(offers: Sequence[Proposal], peer: Peer, pfs_counts: bool = True
                    ) -> tuple[Proposal, list[tuple[str, str]]] | None:
    """The offer that needs the fewest additions here, and those additions."""
    best = None
    for offer in offers:
        ours = _configured(peer, offer.protocol)
        needed = _additions(offer, ours, pfs_counts)
        if needed is not None and (best is None or len(needed) < len(best[1])):
            best = (offer, needed)
    return best


def _in_words(proposal: Proposal) -> str:
    return " / ".join(label(a) for d, _ in DIMENSIONS for a in getattr(proposal, d)[:1])


def _peer_proposal_words(peer: Peer, protocol: str) -> str:
    """This peer's first proposal in the form's words: what to ask the other side for."""
    names = _fields_of(protocol)
    parts = [getattr(peer, names["encryption"])[:1]]
    if not all(a in ("aes256gcm16", "aes128gcm16", "chacha20poly1305") for a in parts[0]):
        parts.append(getattr(peer, names["integrity"])[:1])
    parts.append(tuple(a for a in getattr(peer, names["dh"]) if a != "none")[:1])
    return " / ".join(_keyword_label(k) for part in parts for k in part)


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _proposals(peer: Peer, protocol: str, received: str, configured: str, who: str,
               pfs_counts: bool) -> Finding:
    offers = parse_proposals(received)
    mine = parse_proposals(configured)
    rows = []
    for dim, title in DIMENSIONS:
        theirs = [a for p in offers for a in getattr(p, dim)]
        ours = [a for p in mine for a in getattr(p, dim)]
        shared = [a for a in dict.fromkeys(theirs) if a in ours]
        rows.append((title, ", ".join(label(a) for a in dict.fromkeys(theirs)) or "(none)",
                     ", ".join(label(a) for a in dict.fromkeys(ours)) or "(none)",
                     ", ".join(label(a) for a in shared) or "nothing"))
    names = _fields_of(protocol)
    best = smallest_change(offers, peer, pfs_counts)
    offer_words = "; ".join(_in_words(p) for p in offers)
    text = f"The remote ({who}) offers {offer_words} for {protocol}; this peer accepts none of it."
    if not pfs_counts and not any(p.dh for p in offers):
        text += (" (IKEv2 sends no DH group with the first tunnel: check that the PFS groups "
                 "match too, or the first rekey fails.)")
    change, fields = "", ()
    if best is not None and best[1]:
        adds = [f"{_keyword_label(k)} to {protocol} {_FIELD_WORDS[d]}" for d, k in best[1]]
        change = "Add " + _join(adds) + "."
        fields = tuple(names[d] for d, _ in best[1])
    elif best is None:
        change = "Nothing this form offers matches what the remote offers."
    ask = f"Or ask the remote's administrator for {_peer_proposal_words(peer, protocol)}."
    return Finding("proposals", f"No {protocol} proposal in common", text, change, ask,
                   fields or (names["encryption"],), tuple(rows), who)


def _refused_proposals(peer: Peer, protocol: str) -> Finding:
    names = _fields_of(protocol)
    try:
        offered = ike_proposals(peer) if protocol == "IKE" else esp_proposals(peer)
    except ValueError:
        offered = []
    text = (f"The remote refused every {protocol} proposal this peer offers "
            f"({', '.join(offered)}). It does not say which it would accept.")
    if protocol == "IKE":
        text += " A remote with no connection for this router's address answers the same way."
    ask = (f"Ask the remote's administrator which {protocol} algorithms they have, or for "
           f"{_peer_proposal_words(peer, protocol)}. When the remote starts the tunnel, this "
           "page shows what it offers.")
    return Finding("proposals", f"The remote refused this peer's {protocol} proposals", text,
                   "", ask, (names["encryption"], names["integrity"], names["dh"]), (), "we")


def _acceptable_id(text: str) -> bool:
    """Whether the peer form would take `text` as an ID (its own check, webui/forms.py)."""
    try:
        check_identity(text)
    except ValidationError:
        return False
    return len(text) <= MAX_CHARS["peer_id"]


def _ids(peer: Peer, presented: str, asked_for: str, who: str) -> Finding:
    parts, change, fields = [], [], []
    if presented != peer.effective_peer_id:
        parts.append(f"The remote ({who}) presented ID {presented}; this peer expects "
                     f"{peer.effective_peer_id}.")
        if _acceptable_id(presented):
            change.append(f"set Peer ID to {presented}")
            fields.append("peer_id")
        else:  # suggesting it would send the admin to a field that refuses it
            parts.append("This router cannot accept that ID (a Peer ID is an IP address, a DNS "
                         "name or user@example.com): ask the remote's administrator to change "
                         "it.")
    if asked_for and asked_for != "%any" and asked_for != peer.effective_local_id:
        parts.append(f"It asked for this router as {asked_for}; this peer presents "
                     f"{peer.effective_local_id}.")
        if _acceptable_id(asked_for):
            change.append(f"set Local ID to {asked_for}")
            fields.append("local_id")
        else:
            parts.append("This router cannot present that ID (a Local ID is an IP address, a "
                         "DNS name or user@example.com): ask the remote's administrator to "
                         "expect another.")
    unacceptable = len(parts) > len(change)  # an ID no field here takes: nothing to change
    if not parts:  # the IDs match this peer: charon chose no connection for other reasons
        parts.append(f"The remote ({who}) presented ID {presented}, and asked for this router "
                     f"as {asked_for or 'any ID'}, but no enabled connection here took it.")
    ask = (f"Or ask the remote to present {peer.effective_peer_id} and to expect "
           f"{peer.effective_local_id} for this router.")
    return Finding("ids", "The IDs do not match", " ".join(parts),
                   ("To match them: " + " and ".join(change) + ".") if change else "", ask,
                   tuple(fields) or (() if unacceptable else ("peer_id", "local_id")), (), who)


def _split_selectors(text: str) -> list[str]:
    return [s for s in text.split() if s]


def _networks(peer: Peer, ours: list[str], theirs: list[str], who: str) -> Finding:
    text = (f"The remote ({who}) proposed the networks {', '.join(theirs)} on its side and "
            f"{', '.join(ours)} on this side. This peer has {', '.join(peer.remote_networks)} "
            f"there and {', '.join(peer.local_networks)} here.")
    change, fields = [], []
    if sorted(theirs) != sorted(peer.remote_networks):
        change.append(f"set Remote networks to {', '.join(theirs)}")
        fields.append("remote_networks")
    if sorted(ours) != sorted(peer.local_networks):
        change.append(f"set Local networks to {', '.join(ours)}")
        fields.append("local_networks")
    ask = (f"Or ask the remote to use {', '.join(peer.remote_networks)} on its side and "
           f"{', '.join(peer.local_networks)} on this side (the mirror image of this peer).")
    return Finding("networks", "The networks do not match", text,
                   ("To match them: " + " and ".join(change) + ".") if change else "", ask,
                   tuple(fields) or ("remote_networks", "local_networks"), (), who)


_RECEIVED = re.compile(r"^received proposals: (.+)$")
_CONFIGURED = re.compile(r"^configured proposals: (.+)$")
_NO_PROPOSAL = re.compile(r"received proposals unacceptable|no acceptable proposal found|"
                          r"no proposal found|no matching proposal found, sending")
_LOOKING = re.compile(r"^looking for .*peer configs matching (\S+?)(?:\[(.*?)\])?\.\.\.(\S+?)\[(.*)\]$")
_NO_CONFIG = re.compile(r"no (?:matching )?peer config found")
_IDIR = re.compile(r"IDir '(.*)' does not match to '(.*)'")
_TS_V2 = re.compile(r"^traffic selectors (.+) === (.+) unacceptable$")
_TS_V1 = re.compile(r"^no matching CHILD_SA config found for (.+) === (.+)$")
_INITIATING = re.compile(r"^initiating .*IKE_SA \S+ to (\S+)$")
_THEY = re.compile(r"^(\S+) is initiating an? .*IKE_SA")
_RETRANSMIT = re.compile(r"retransmit \d+ of request")
_ESTABLISHED = re.compile(r"^IKE_SA \S+ established between")
_NO_KEY = re.compile(r"no shared key found for (.+)$")


def _attempt(lines: Sequence[LogLine]) -> list[LogLine]:
    """The lines of the last IKE SA whose negotiation failed (or of the last one at all)."""
    from webui.drivers.failure_reasons import failure_reason
    by_sa: dict[int, list[LogLine]] = {}
    failed: list[int] = []
    for line in lines:
        if not line.ike:
            continue
        by_sa.setdefault(line.ike, []).append(line)
        if failure_reason(line.text) or _RETRANSMIT.search(line.text):
            if line.ike in failed:
                failed.remove(line.ike)
            failed.append(line.ike)
    return by_sa[failed[-1]] if failed else []


def explain(peer: Peer, lines: Iterable[LogLine],
            changed: dict[str, float] | None = None) -> list[Finding]:
    """What charon's lines say about the peer's last failed negotiation; [] when they say
    nothing this page can explain. `changed`: {field: when} the admin changed the peer's IDs or
    key here and the tunnel has not been up since (IPsecService.auth_changed)."""
    lines = list(lines)
    attempt = _attempt(lines)
    if not attempt:
        return []
    found = _explain(peer, attempt)
    return [_changed_before(f, changed, lines) for f in found] if changed else found


# Which of the admin's changes may explain each kind of finding
_AUTH_FIELDS = {"key": ("local_id", "peer_id", "psk"), "ids": ("local_id", "peer_id")}
_CHILD_UP = re.compile(r"^CHILD_SA \S+ established")


def _changed_before(finding: Finding, changed: dict[str, float], lines: list[LogLine]) -> Finding:
    """An authentication finding that a change of this peer's IDs or key came just before:
    that change is named (first among the fields to change), as long as no tunnel came up
    between it and the failure."""
    from dataclasses import replace
    fields = _AUTH_FIELDS.get(finding.kind, ())
    up = [line.at for line in lines if _CHILD_UP.match(line.text)]
    before = tuple(sorted(((name, at) for name, at in changed.items() if name in fields
                           and at <= finding.at and not any(at < u <= finding.at for u in up)),
                          key=lambda item: fields.index(item[0])))
    if not before:
        return finding
    first = tuple(name for name, _ in before)
    return replace(finding, changed=before,
                   fields=first + tuple(f for f in finding.fields if f not in first))


def _explain(peer: Peer, attempt: list[LogLine]) -> list[Finding]:
    texts = [line.text for line in attempt]
    at = attempt[-1].at
    who, remote = "we", peer.remote_gateway
    for text in texts:
        if m := _INITIATING.match(text):
            remote = m.group(1)
        elif m := _THEY.match(text):
            who = remote = m.group(1)
    findings = []
    established = any(_ESTABLISHED.match(t) for t in texts)
    failures = [i for i, text in enumerate(texts) if _NO_PROPOSAL.search(text)]
    for i, text in enumerate(texts):
        if i in failures:
            around = _around(texts, failures, i, {"received": _RECEIVED, "configured": _CONFIGURED})
            if len(around) == 2:
                received, configured = around["received"].group(1), around["configured"].group(1)
                protocol = "IKE" if received.startswith("IKE") else "ESP"
                first_child = peer.ike_version == 2 and protocol == "ESP"
                findings.append(_proposals(peer, protocol, received, configured, who,
                                           pfs_counts=not first_child))
        elif "NO_PROPOSAL_CHOSEN" in text and text.startswith("received"):
            child = "no CHILD_SA built" in text or established
            findings.append(_refused_proposals(peer, "ESP" if child else "IKE"))
    no_config = [i for i, text in enumerate(texts) if _NO_CONFIG.search(text)]
    for i, text in enumerate(texts):
        if i in no_config:
            if looking := _around(texts, no_config, i, {"ids": _LOOKING}).get("ids"):
                findings.append(_ids(peer, looking.group(4), looking.group(2) or "", who))
        elif m := _IDIR.search(text):
            findings.append(_ids(peer, m.group(1), "", remote))
        elif m := _TS_V2.match(text):
            findings.append(_networks(peer, _split_selectors(m.group(1)),
                                      _split_selectors(m.group(2)), who))
        elif m := _TS_V1.match(text):
            findings.append(_networks(peer, _split_selectors(m.group(2)),
                                      _split_selectors(m.group(1)), who))
        elif text.startswith("received TS_UNACCEPTABLE") or (
                established and text.startswith("received INVALID_ID_INFORMATION")):
            findings.append(Finding(
                "networks", "The remote refused this peer's networks",
                f"The remote refused the networks this peer proposed: "
                f"{', '.join(peer.local_networks)} here, {', '.join(peer.remote_networks)} "
                "there. It does not say which it has.",
                "", "Ask the remote's administrator for the networks they configured for this "
                "tunnel: theirs must be this peer's remote networks, and the other way round.",
                ("remote_networks", "local_networks"), (), "we"))
    findings += _key(peer, texts, who, remote)
    if not findings:
        findings += _reachability(texts, remote)
    return [f if f.at else _at(f, at, texts) for f in _unique(findings)]


def _around(texts: list[str], marks: list[int], i: int, patterns: dict[str, re.Pattern]
            ) -> dict[str, re.Match]:
    """For the line `texts[i]` (one of the failure lines at `marks`), the nearest match of each
    pattern: since the failure before it, else up to the failure after it. charon raises its
    log lines to VICI from a queue that two worker threads may drain at once (vici_logger.c),
    so lines logged in a row may arrive in another order."""
    at = marks.index(i)
    start = marks[at - 1] + 1 if at else 0
    end = marks[at + 1] if at + 1 < len(marks) else len(texts)
    found = {}
    for span in (range(i - 1, start - 1, -1), range(i + 1, end)):
        for j in span:
            for key, pattern in patterns.items():
                if key not in found and (m := pattern.match(texts[j])):
                    found[key] = m
    return found


def _key(peer: Peer, texts: list[str], who: str, remote: str) -> list[Finding]:
    if any("MAC mismatched" in t for t in texts) or (
            who != "we" and any("decryption failed" in t for t in texts)):
        return [Finding("key", "The pre-shared keys differ",
                        f"The remote ({who}) authenticated with another pre-shared key: "
                        "this router refused it.",
                        "Enter the same pre-shared key here as on the remote.", "",
                        ("psk",), (), who)]
    if any("decryption failed" in t for t in texts):
        return [Finding("key", "The pre-shared keys differ",
                        f"This router could not decrypt the answers of {remote}: the two sides "
                        "use different pre-shared keys.",
                        "Enter the same pre-shared key here as on the remote.", "",
                        ("psk",), (), "we")]
    missing = [m.group(1) for t in texts if (m := _NO_KEY.search(t))]
    if missing:
        return [Finding("key", "No pre-shared key for these IDs",
                        f"This router has no pre-shared key for the IDs {missing[0]}.",
                        "Enter the pre-shared key again, or check the IDs.", "",
                        ("psk", "peer_id"), (), who)]
    if any("AUTHENTICATION_FAILED" in t and t.startswith("received") for t in texts):
        return [Finding("key", "The remote refused this router's authentication",
                        f"The remote ({remote}) answered AUTHENTICATION_FAILED: its pre-shared "
                        "key differs from this peer's, or it expects other IDs. This router "
                        f"presents ID {peer.effective_local_id} and expects "
                        f"{peer.effective_peer_id}. The remote's log says which; when the "
                        "remote starts the tunnel, this page can tell.",
                        "Check the pre-shared key, the Local ID and the Peer ID.",
                        "Ask the remote's administrator what their log says.",
                        ("psk", "local_id", "peer_id"), (), "we")]
    return []


def _reachability(texts: list[str], remote: str) -> list[Finding]:
    retransmits = [t for t in texts if _RETRANSMIT.search(t)]
    gave_up = any("giving up after" in t or "peer not responding" in t for t in texts)
    answered = any(t.startswith("received packet") or t.startswith("parsed ") for t in texts)
    if not (retransmits or gave_up) or answered:
        return []
    return [Finding("reachability", "The remote gateway does not answer",
                    f"The remote gateway {remote} does not answer on UDP 500/4500: "
                    f"{len(retransmits)} retransmits, no answer"
                    + (", and charon gave up." if gave_up else " yet."),
                    "Check the Remote gateway address.",
                    "Check that IPsec runs on the remote, and that nothing between the two "
                    "drops UDP 500 and 4500.", ("remote_gateway",), (), "we")]


def _unique(findings: list[Finding]) -> list[Finding]:
    seen, out = set(), []
    for finding in findings:
        if (finding.kind, finding.text) not in seen:
            seen.add((finding.kind, finding.text))
            out.append(finding)
    return out


def _at(finding: Finding, at: float, texts: list[str]) -> Finding:
    from dataclasses import replace
    return replace(finding, at=at, lines=tuple(texts))
