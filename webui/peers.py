"""The peer: what a site-to-site tunnel is made of, and the vetted algorithm catalogue.

A `Peer` is what the store keeps, what the drivers turn into strongSwan connections and firewall
rules, and what the pages show. Validation of user input lives in `webui/forms.py`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

# --- Algorithm catalogue -------------------------------------------------------------------------
# strongSwan keywords, in the order the form offers them. `weak` ones are allowed but flagged.


@dataclass(frozen=True)
class Algorithm:
    keyword: str
    label: str
    weak: bool = False
    aead: bool = False


ENCRYPTION = (
    Algorithm("aes256gcm16", "AES-256-GCM", aead=True),
    Algorithm("aes128gcm16", "AES-128-GCM", aead=True),
    Algorithm("chacha20poly1305", "ChaCha20-Poly1305", aead=True),
    Algorithm("aes256", "AES-256-CBC"),
    Algorithm("aes128", "AES-128-CBC"),
    Algorithm("3des", "3DES-CBC", weak=True),
)
INTEGRITY = (
    Algorithm("sha256", "SHA-256"),
    Algorithm("sha384", "SHA-384"),
    Algorithm("sha512", "SHA-512"),
    Algorithm("sha1", "SHA-1", weak=True),
)
DH_GROUPS = (
    Algorithm("curve25519", "Curve25519"),
    Algorithm("ecp256", "ECP-256 (NIST P-256)"),
    Algorithm("ecp384", "ECP-384 (NIST P-384)"),
    Algorithm("modp3072", "MODP-3072"),
    Algorithm("modp4096", "MODP-4096"),
    Algorithm("modp2048", "MODP-2048"),
    Algorithm("modp1024", "MODP-1024", weak=True),
)
NO_PFS = Algorithm("none", "None (no PFS)")
ESP_DH_GROUPS = DH_GROUPS + (NO_PFS,)

ALGORITHMS = {a.keyword: a for a in ENCRYPTION + INTEGRITY + ESP_DH_GROUPS}
AEAD = frozenset(a.keyword for a in ENCRYPTION if a.aead)
WEAK = frozenset(a.keyword for a in ALGORITHMS.values() if a.weak)

# Presets fill the algorithm selectors in the form. "modern" is also the default of a new peer.
# These are the presets on a full strongSwan build; webui/capabilities.py chooses them from what
# the charon at hand supports (a unit test keeps the two equal on a full build).
PRESETS = {
    "modern": {
        # IKEv1 has no AEAD for the IKE SA, so the IKE default stays CBC + HMAC to suit both versions.
        "ike_encryption": ("aes256",),
        "ike_integrity": ("sha256",),
        "ike_dh_groups": ("curve25519", "ecp256"),
        "esp_encryption": ("aes256gcm16",),
        "esp_integrity": (),
        "esp_dh_groups": ("curve25519", "ecp256"),
    },
    "compatible": {
        "ike_encryption": ("aes256", "aes128"),
        "ike_integrity": ("sha256", "sha1"),
        "ike_dh_groups": ("modp2048", "modp1024"),
        "esp_encryption": ("aes256", "aes128"),
        "esp_integrity": ("sha256", "sha1"),
        # PFS with the IKE groups: "none" with groups is not a valid choice (one or the other).
        "esp_dh_groups": ("modp2048", "modp1024"),
    },
}

# --- Proposal rules ------------------------------------------------------------------------------
# What makes the six algorithm choices into proposals charon accepts. The one copy: the form shows
# these words next to the field (webui/forms.py), and the builders refuse a peer that breaks them
# with the same words (webui/drivers/vici_messages.py), so a stored peer checked at load time reads
# as the form would have put it.

PROPOSAL_FIELDS = ("ike_encryption", "ike_dh_groups", "ike_integrity",
                   "esp_encryption", "esp_dh_groups", "esp_integrity")


def applicable_integrity(ciphers, integrity) -> tuple[str, ...]:
    """The integrity choices that apply beside `ciphers`: none while every cipher is AEAD (AES-GCM
    and ChaCha20-Poly1305 include integrity), so the form drops ticked ones rather than refusing."""
    return tuple(integrity) if any(c not in AEAD for c in ciphers) else ()


def proposal_problems(ike_version: int, choices) -> dict[str, str]:
    """Why these choices ({field: keywords} for PROPOSAL_FIELDS) make no proposal, by field, in
    PROPOSAL_FIELDS order; {} when they do. Integrity beside AEAD alone is no problem: charon does
    without it (the form drops it, `applicable_integrity`)."""
    problems = {}
    for side in ("ike", "esp"):
        ciphers = choices[f"{side}_encryption"] or ()
        integrity = choices[f"{side}_integrity"] or ()
        if not ciphers:
            problems[f"{side}_encryption"] = "Choose at least one encryption algorithm."
        elif side == "ike" and ike_version == 1 and AEAD.intersection(ciphers):
            problems["ike_encryption"] = ("IKEv1 cannot use AES-GCM or ChaCha20-Poly1305 for IKE; "
                                          "choose AES-CBC (ESP may still use them).")
        if not choices[f"{side}_dh_groups"]:
            problems[f"{side}_dh_groups"] = ("Choose at least one DH group." if side == "ike" else
                                             "Choose at least one DH group, or None for no PFS.")
        if not integrity and any(c not in AEAD for c in ciphers):
            problems[f"{side}_integrity"] = ("AES-CBC and 3DES need an integrity algorithm; "
                                             "choose at least one.")
    return problems


# Directions traffic leaving the tunnel may take; the firewall driver turns them into rules.
FIREWALL_CHOICES = (
    ("forward_lan", "Forward to LAN"),
    ("forward_wan", "Forward to WAN"),
    ("input", "Reach the router itself"),  # management, DNS on the router; off unless chosen
)
DEFAULT_FIREWALL = ("forward_lan", "forward_wan")

# --- Advanced options ----------------------------------------------------------------------------
# Each default is what every peer did before these options existed (schema version 1), so an old
# store and a peer added without opening "Advanced" behave exactly as before.

ANY_GATEWAY = "%any"  # the remote gateway of a peer whose address changes: it can only respond
START_ACTIONS = (
    ("start", "Start now and keep up"),
    ("trap", "Start when traffic needs it"),
    ("none", "Wait for the other side (responder only)"),
)
DPD_ACTIONS = (
    ("restart", "Restart the tunnel"),
    ("clear", "Close the tunnel"),
    ("trap", "Close, restart when traffic needs it"),
)
FRAGMENTATION = (
    ("yes", "Yes, when needed"),
    ("accept", "Accept only (never fragment our own)"),
    ("no", "No"),
)
# Bounds on rekey times: shorter ones spend the CPU of a small router on key exchanges, and below
# these charon's margins (10 % of the time, randomised) become a few seconds.
IKE_REKEY_MIN, IKE_REKEY_MAX, IKE_REKEY_DEFAULT = 300, 7 * 86400, 4 * 3600
CHILD_REKEY_MIN, CHILD_REKEY_MAX, CHILD_REKEY_DEFAULT = 60, 86400, 3600
DPD_MAX = 3600
# What the form's HTML min/max attributes mirror (the server checks the same bounds).
LIMITS = {"dpd_max": DPD_MAX, "ike_min": IKE_REKEY_MIN, "ike_max": IKE_REKEY_MAX,
          "child_min": CHILD_REKEY_MIN, "child_max": CHILD_REKEY_MAX}

SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Peer:
    """One site-to-site tunnel, as the administrator configured it."""

    name: str
    local_ip: str
    remote_gateway: str
    local_networks: tuple[str, ...]
    remote_networks: tuple[str, ...]
    psk: str = field(repr=False)
    local_id: str = ""  # empty: strongSwan uses local_ip
    peer_id: str = ""  # empty: strongSwan uses remote_gateway
    ike_version: int = 2
    ike_encryption: tuple[str, ...] = PRESETS["modern"]["ike_encryption"]
    ike_integrity: tuple[str, ...] = PRESETS["modern"]["ike_integrity"]
    ike_dh_groups: tuple[str, ...] = PRESETS["modern"]["ike_dh_groups"]
    esp_encryption: tuple[str, ...] = PRESETS["modern"]["esp_encryption"]
    esp_integrity: tuple[str, ...] = PRESETS["modern"]["esp_integrity"]
    esp_dh_groups: tuple[str, ...] = PRESETS["modern"]["esp_dh_groups"]
    keying_retries: int = 3  # 0 = retry forever
    firewall: tuple[str, ...] = DEFAULT_FIREWALL
    enabled: bool = True
    dpd_delay: int = 30  # seconds; 0 = no dead peer detection
    dpd_action: str = "restart"
    ike_rekey_time: int = IKE_REKEY_DEFAULT  # seconds
    child_rekey_time: int = CHILD_REKEY_DEFAULT  # seconds
    ike_reauth: bool = False  # IKEv2: reauthenticate instead of rekeying (IKEv1 always does)
    start_action: str = "start"
    encap: bool = False  # force UDP encapsulation even without NAT
    disable_mobike: bool = False  # IKEv2 only
    fragmentation: str = "yes"
    aggressive: bool = False  # IKEv1 only; weak

    @property
    def any_gateway(self) -> bool:
        """The remote's address is not known: this router only responds, by the peer's ID."""
        return self.remote_gateway == ANY_GATEWAY

    @property
    def responder_only(self) -> bool:
        return self.start_action == "none"

    @property
    def effective_local_id(self) -> str:
        return self.local_id or self.local_ip

    @property
    def effective_peer_id(self) -> str:
        return self.peer_id or self.remote_gateway

    @property
    def key_missing(self) -> bool:
        """Restored from a backup without keys, with no key stored under its name: it stays
        disabled until one is entered."""
        return not self.psk

    def to_record(self) -> dict:
        """The JSON-able dict the store keeps."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_record(cls, record: dict) -> Peer:
        known = _PEER_FIELDS
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in record.items() if k in known}
        # Before issue 17 an omitted ID could be stored as null, which broke every filtered list.
        for name in ("local_id", "peer_id"):
            if fields.get(name) is None:
                fields[name] = ""
        return cls(**fields)


_PEER_FIELDS = frozenset(f.name for f in fields(Peer))
ADVANCED_FIELDS = ("dpd_delay", "dpd_action", "ike_rekey_time", "child_rekey_time", "ike_reauth",
                   "start_action", "encap", "disable_mobike", "fragmentation", "aggressive")
ADVANCED_DEFAULTS = {f.name: f.default for f in fields(Peer) if f.name in ADVANCED_FIELDS}
