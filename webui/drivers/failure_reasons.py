"""Why a tunnel failed, in words an administrator acts on: one charon log message -> a reason.

Pure and self-contained: `failure_reason(message)` is all a listener needs (the driver's
`Failures`, a tunnel monitor). A message is charon's text without its time and thread prefix, as
VICI's `log` and `control-log` events carry it. The first pattern that matches wins; named groups
are put into the reason. vici's own "establishing CHILD_SA 'x' failed" says only that something
failed, so it is not here: the line charon logged before it is the reason.

Every pattern is tested against a line the lab's real charon logged when the lab was really
misconfigured that way (tests/integration/test_failure_reasons.py); the comment after each entry
is such a line. Lines one end logs as the responder (the remote's view) are here too: a router
answers for its peers as often as it initiates.
"""
from __future__ import annotations

import re
import threading
import time

NOT_RESPONDING = _NOT_RESPONDING = "the remote gateway is not responding"
_KEYS_DIFFER = "authentication failed (the pre-shared keys differ)"
_NO_PROPOSAL = "no matching proposal (the two sides' algorithms differ)"

REASONS: tuple[tuple[str, str], ...] = (
    # --- an algorithm this strongSwan lacks (a plugin is missing) --------------------------------
    (r"configured DH group (?P<group>\S+) not supported",
     # configured DH group CURVE_25519 not supported
     "this strongSwan does not support DH group {group} (a plugin is missing)"),
    (r"requested DH group (?P<group>\S+) not supported",
     # requested DH group ECP_256 not supported
     "the remote insists on DH group {group}, which this strongSwan does not support "
     "(a plugin is missing)"),
    (r"unsupported (?:AEAD|encryption|integrity) algorithm (?P<alg>\S+)",
     # failed to create ESP context: unsupported AEAD algorithm AES_GCM_16
     "this strongSwan cannot do {alg} for the tunnel (a plugin is missing)"),
    # --- INVALID_KE_PAYLOAD: the two ends' first DH groups differ ---------------------------------
    (r"peer didn't accept DH group (?P<ours>\S+), it requested (?P<theirs>\S+)",
     # peer didn't accept DH group MODP_2048, it requested ECP_256
     "the remote wants DH group {theirs}, not {ours} (INVALID_KE_PAYLOAD)"),
    (r"DH group (?P<theirs>\S+) unacceptable, requesting (?P<ours>\S+)",
     # DH group MODP_2048 unacceptable, requesting ECP_256
     "the remote offered DH group {theirs}; this end asked for {ours} (INVALID_KE_PAYLOAD)"),
    # --- authentication ---------------------------------------------------------------------------
    (r"MAC mismatched",
     # tried 1 shared key for '192.0.2.2' - '192.0.2.1', but MAC mismatched
     _KEYS_DIFFER),
    (r"decryption failed",
     # invalid HASH_V1 payload length, decryption failed?   (IKEv1)
     _KEYS_DIFFER),
    (r"no shared key found for (?P<ids>.+)",
     # no shared key found for '192.0.2.2' - '192.0.2.1'
     "authentication failed (no pre-shared key for the IDs {ids})"),
    (r"AUTHENTICATION_FAILED",
     # received AUTHENTICATION_FAILED notify error   (IKEv1: ... error notify)
     # The remote refused us; its own log says whether for the key or for an ID (it does not
     # tell): both read the same from this side.
     "authentication failed: the remote refused it (the keys differ, or it expects other IDs)"),
    (r"no (?:matching )?peer config found",
     # no matching peer config found   (IKEv1: no peer config found)
     "no connection here matches the remote's IDs (check local and peer ID on both sides)"),
    (r"IDir '(?P<presented>.*)' does not match to '(?P<expected>.*)'",
     # IDir 'branch.example.com' does not match to '192.0.2.2'   (IKEv1, as the initiator)
     "the IDs do not match: the remote presented {presented}, this peer expects {expected}"),
    (r"INVALID_ID_INFORMATION",
     # received INVALID_ID_INFORMATION error notify   (IKEv1 quick mode: the networks)
     "the remote refused the networks (traffic selectors) or the ID (INVALID_ID_INFORMATION)"),
    # --- addresses and proposals ------------------------------------------------------------------
    (r"no IKE config found for (?P<addresses>[^,\s]+)",
     # no IKE config found for 192.0.2.2...192.0.2.1, sending NO_PROPOSAL_CHOSEN
     "no connection here for the addresses {addresses}"),
    (r"NO_PROPOSAL_CHOSEN",
     # received NO_PROPOSAL_CHOSEN notify error   (CHILD_SA: ..., no CHILD_SA built)
     "no matching proposal (the two sides' algorithms differ, or the remote has no connection "
     "for this router's address)"),
    # Not "no matching proposal found, trying alternative config": a responder with several
    # configs for the address tries the next one; when none fits, it says NO_PROPOSAL_CHOSEN.
    (r"no acceptable proposal found|received proposals unacceptable|no proposal found",
     # no acceptable proposal found   (IKE_SA: received proposals unacceptable; IKEv1: no proposal found)
     _NO_PROPOSAL),
    (r"TS_UNACCEPTABLE",
     # received TS_UNACCEPTABLE notify, no CHILD_SA built
     "the remote did not accept the networks (traffic selectors)"),
    (r"no matching CHILD_SA config found for (?P<there>.+) === (?P<here>.+)",
     # no matching CHILD_SA config found for 10.99.0.0/24 === 198.51.100.0/24   (IKEv1 responder)
     "the networks the remote asked for ({here} here, {there} there) do not match this peer's "
     "(traffic selectors)"),
    (r"traffic selectors (?P<here>.+) === (?P<there>.+) unacceptable",
     # traffic selectors 203.0.113.0/24 === 198.51.100.0/24 unacceptable   (this end's, then theirs)
     "the networks the remote asked for ({here} here, {there} there) do not match this peer's "
     "(traffic selectors)"),
    # --- the kernel -------------------------------------------------------------------------------
    (r"unable to install .*IPsec SA \(SAD\) in kernel",
     # unable to install inbound and outbound IPsec SA (SAD) in kernel
     "the tunnel's keys could not be installed in the kernel (does it have ESP and XFRM?)"),
    (r"unable to install IPsec policies \(SPD\) in kernel",
     "the tunnel's policies could not be installed in the kernel"),
    # --- reaching the remote ----------------------------------------------------------------------
    (r"unable to resolve (?P<host>[^,\s]+)",
     # unable to resolve nonexistent.invalid, initiate aborted
     "the remote gateway's name {host} cannot be resolved"),
    (r"giving up after \d+ retransmits|peer not responding",
     # giving up after 2 retransmits   (then: establishing IKE_SA failed, peer not responding)
     _NOT_RESPONDING),
)

_COMPILED = tuple((re.compile(pattern), reason) for pattern, reason in REASONS)
# A cheap first look: every pattern above contains one of these words, and most log lines
# (packets sent, tasks queued) none, so the regular expressions run only on the few that might match.
_HINTS = ("support", "DH group", "MAC", "decryption", "shared key", "AUTHENTICATION", "peer config",
          "IDir",
          "INVALID_ID", "IKE config", "PROPOSAL", "proposal", "TS_UNACCEPTABLE", "selectors",
          "CHILD_SA config",
          "unable to", "retransmits", "not responding")


def failure_reason(message: str) -> str | None:
    """The administrator's reason for a charon log message that reports a failure, else None."""
    if not any(hint in message for hint in _HINTS):
        return None
    for pattern, reason in _COMPILED:
        match = pattern.search(message)
        if match:
            return reason.format(**match.groupdict())
    return None


FAILURE_TTL = 15 * 60  # a failure older than this says little about the tunnel now


class Failures:
    """The last negotiation failure per connection, forgotten after FAILURE_TTL or when it is up."""

    def __init__(self, ttl: float = FAILURE_TTL):
        self.ttl = ttl
        self._lock = threading.Lock()
        self._by_name: dict[str, tuple[str, float]] = {}

    def record(self, name: str, reason: str) -> None:
        with self._lock:
            self._by_name[name] = (reason, time.monotonic())

    def clear(self, name: str) -> None:
        with self._lock:
            self._by_name.pop(name, None)

    def current(self) -> dict[str, str]:
        now = time.monotonic()
        with self._lock:
            self._by_name = {n: (r, t) for n, (r, t) in self._by_name.items() if now - t < self.ttl}
            return {n: r for n, (r, _) in self._by_name.items()}

    def note_log(self, name: str, message: str) -> str | None:
        reason = failure_reason(message)
        if name and reason:
            self.record(name, reason)
        return reason


def id_mismatch(presented: str, asked_for: str = "") -> str:
    """The reason when, as the responder, no connection here matched the IDs the remote sent:
    "looking for peer configs matching <us>[<asked for>]...<them>[<presented>]", then "no
    matching peer config found". Not a key problem, and it must not read like one."""
    reason = f"the IDs do not match: the remote presented {presented[:100]}"
    if asked_for and asked_for != "%any":
        reason += f" and asked for this router as {asked_for[:100]}"
    return reason
