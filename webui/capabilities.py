"""What the strongSwan at hand can do: the plugins behind each algorithm, presets chosen from what
charon reports (`get-algorithms`, as catalogue keywords), and peers checked against it.

Small routers ship small strongSwan builds (OpenWrt's strongswan-minimal: AES-CBC, SHA-1/2, HMAC,
MODP; no openssl, so no ECP, Curve25519 or GCM), and a firmware change or peers restored from
another router can leave a peer needing what charon lacks. charon 5.9 does not leave an algorithm
it cannot do out of a proposal by itself: it fails the whole negotiation ("configured DH group
CURVE_25519 not supported" when that is the first group; "unsupported AEAD algorithm AES_GCM_16"
when the remote picked it). So what is loaded is the peer without what charon lacks (`loadable`),
the store keeps what the administrator chose, and the page says what was left out (`lacking`).

Everything here is pure: `supported` is a set of catalogue keywords, None when charon could not be
asked (then everything is taken as supported, as the form then offers everything).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from webui.peers import AEAD, ALGORITHMS, DH_GROUPS, ENCRYPTION, ESP_DH_GROUPS, INTEGRITY, Peer

# strongSwan 5.9 plugins that implement each algorithm (the first one is the usual one). GCM and
# HMAC also need the cipher or hash plugin under them (aes, sha1, sha2); openssl brings its own.
PLUGINS = {
    "aes256gcm16": ("gcm", "openssl"),
    "aes128gcm16": ("gcm", "openssl"),
    "chacha20poly1305": ("chapoly", "openssl"),
    "aes256": ("aes", "openssl"),
    "aes128": ("aes", "openssl"),
    "3des": ("des", "openssl"),
    "sha256": ("sha2", "openssl"),
    "sha384": ("sha2", "openssl"),
    "sha512": ("sha2", "openssl"),
    "sha1": ("sha1", "openssl"),
    "curve25519": ("curve25519", "openssl"),
    "ecp256": ("openssl",),
    "ecp384": ("openssl",),
    "modp4096": ("gmp", "openssl"),
    "modp3072": ("gmp", "openssl"),
    "modp2048": ("gmp", "openssl"),
    "modp1024": ("gmp", "openssl"),
}

# Debian 12's package for each plugin it ships (curve25519, chapoly and des it does not build:
# openssl covers them).
DEBIAN_PACKAGES = {
    "openssl": "libstrongswan-standard-plugins",
    "gcm": "libstrongswan-standard-plugins",
    "aes": "libstrongswan",
    "sha1": "libstrongswan",
    "sha2": "libstrongswan",
    "hmac": "libstrongswan",
    "gmp": "libstrongswan",
}

FIELD_LABELS = {
    "ike_encryption": "IKE encryption", "ike_integrity": "IKE integrity",
    "ike_dh_groups": "IKE DH groups", "esp_encryption": "ESP encryption",
    "esp_integrity": "ESP integrity", "esp_dh_groups": "ESP DH groups",
}
FIELDS = {
    "ike_encryption": ENCRYPTION, "ike_integrity": INTEGRITY, "ike_dh_groups": DH_GROUPS,
    "esp_encryption": ENCRYPTION, "esp_integrity": INTEGRITY, "esp_dh_groups": ESP_DH_GROUPS,
}


def is_supported(keyword: str, supported: frozenset[str] | None) -> bool:
    # "none" (no PFS) needs nothing; a keyword outside the catalogue is charon's to judge.
    return supported is None or keyword not in PLUGINS or keyword in supported


def needs(keyword: str) -> str:
    """'Curve25519 (plugin curve25519 or openssl)': an algorithm and what would provide it."""
    return f"{label(keyword)} (plugin {' or '.join(PLUGINS[keyword])})"


def label(keyword: str) -> str:
    return ALGORITHMS[keyword].label.split(" (")[0]  # "ECP-256", without "(NIST P-256)"


def join_words(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


# --- Presets -------------------------------------------------------------------------------------
# Each field: (keywords in order of preference, how many to take; None = every one supported).
# ESP integrity is only chosen when the ESP cipher chosen is not AEAD (AES-GCM includes it).

_DH_PREFERENCE = ("curve25519", "ecp256", "modp3072", "modp2048")
PREFERENCES = {
    "modern": {
        # IKEv1 has no AEAD for the IKE SA, so IKE stays CBC + HMAC to suit both versions.
        "ike_encryption": (("aes256", "aes128"), 1),
        "ike_integrity": (("sha256", "sha384", "sha512"), 1),
        "ike_dh_groups": (_DH_PREFERENCE, 2),
        "esp_encryption": (("aes256gcm16", "aes128gcm16", "aes256", "aes128"), 1),
        "esp_integrity": (("sha256", "sha384", "sha512"), 1),
        "esp_dh_groups": (_DH_PREFERENCE, 2),
    },
    "compatible": {
        "ike_encryption": (("aes256", "aes128"), None),
        "ike_integrity": (("sha256", "sha1"), None),
        "ike_dh_groups": (("modp2048", "modp1024"), None),
        "esp_encryption": (("aes256", "aes128"), None),
        "esp_integrity": (("sha256", "sha1"), None),
        # PFS with the IKE groups: "none" with groups is not a valid choice (it is one or the other).
        "esp_dh_groups": (("modp2048", "modp1024"), None),
    },
}
PRESET_LABELS = {"modern": "Modern", "compatible": "Compatible with older peers"}


def _pick(field: str, preference: tuple[str, ...], take: int | None,
          supported: frozenset[str] | None) -> tuple[str, ...]:
    chosen = tuple(k for k in preference if is_supported(k, supported))[:take]
    if chosen:
        return chosen
    # Nothing preferred is there: the first the catalogue has, strong before weak, so the preset
    # still makes a proposal this charon can send.
    candidates = [a for a in FIELDS[field] if a.keyword != "none" and is_supported(a.keyword, supported)]
    candidates.sort(key=lambda a: a.weak)
    return tuple(a.keyword for a in candidates[:1])


def preset(name: str, supported: frozenset[str] | None = None) -> dict[str, tuple[str, ...]]:
    """The preset's algorithms on a charon that supports `supported`: field -> keywords."""
    chosen = {field: _pick(field, preference, take, supported)
              for field, (preference, take) in PREFERENCES[name].items()}
    if all(c in AEAD for c in chosen["esp_encryption"]):
        chosen["esp_integrity"] = ()
    return chosen


def preset_notes(name: str, supported: frozenset[str] | None) -> list[str]:
    """What the preset leaves out on this charon, and why, one sentence per field that changed."""
    ideal, here = preset(name), preset(name, supported)
    notes = []
    for field, keywords in ideal.items():
        dropped = [k for k in keywords if k not in here[field]]
        if not dropped or field == "esp_integrity":
            continue
        instead = join_words([label(k) for k in here[field]]) if here[field] else "nothing"
        notes.append(f"{FIELD_LABELS[field]}: {join_words([needs(k) for k in dropped])} left out, as "
                     f"this strongSwan does not support {'it' if len(dropped) == 1 else 'them'}; "
                     f"{instead} instead.")
    if here["esp_integrity"] and not ideal["esp_integrity"]:
        added = join_words([label(k) for k in here["esp_integrity"]])
        notes.append(f"ESP integrity: {added} added, "
                     "as the ESP cipher used instead has none built in.")
    return notes


def presets(supported: frozenset[str] | None) -> dict[str, dict]:
    """Every preset for the form: name -> {"label", "choices", "notes"}."""
    return {name: {"label": PRESET_LABELS[name], "choices": preset(name, supported),
                   "notes": preset_notes(name, supported)} for name in PREFERENCES}


# --- Peers against this charon -------------------------------------------------------------------

@dataclass(frozen=True)
class Lacking:
    """What a stored peer chose that this charon cannot do, and whether a proposal is left."""

    keywords: tuple[str, ...]
    loadable: bool

    @property
    def message(self) -> str:
        text = (f"needs {join_words([needs(k) for k in self.keywords])}, which this strongSwan does not "
                "support")
        if self.loadable:
            return text + "; loaded without " + ("it" if len(self.keywords) == 1 else "them")
        return text + "; not loaded: no proposal is possible without " + \
            ("it" if len(self.keywords) == 1 else "them")


def unsupported(peer: Peer, supported: frozenset[str] | None) -> tuple[str, ...]:
    """The peer's algorithms this charon lacks, each once, in the form's order."""
    found: dict[str, None] = {}
    for field in FIELDS:
        for keyword in getattr(peer, field):
            if not is_supported(keyword, supported):
                found[keyword] = None
    return tuple(found)


def loadable(peer: Peer, supported: frozenset[str] | None) -> Peer | None:
    """The peer as charon can load it: its algorithms without those charon lacks (the store keeps
    them). None when some part of the proposal would be left with nothing."""
    if supported is None:
        return peer
    kept = {field: tuple(k for k in getattr(peer, field) if is_supported(k, supported))
            for field in FIELDS}
    for side in ("ike", "esp"):
        if not kept[f"{side}_integrity"]:  # CBC ciphers cannot go without integrity
            kept[f"{side}_encryption"] = tuple(c for c in kept[f"{side}_encryption"] if c in AEAD)
    if not all(kept[f] for f in ("ike_encryption", "ike_dh_groups", "esp_encryption",
                                 "esp_dh_groups")):
        return None
    if peer.ike_version == 1 and not [c for c in kept["ike_encryption"] if c not in AEAD]:
        return None
    return replace(peer, **kept)


def first_lacking_field(peer: Peer, supported: frozenset[str] | None) -> str | None:
    return next((f for f in FIELDS if any(not is_supported(k, supported)
                                          for k in getattr(peer, f))), None)


def check(peer: Peer, supported: frozenset[str] | None) -> Lacking | None:
    """None when this charon can do everything the peer chose."""
    missing = unsupported(peer, supported)
    if not missing:
        return None
    return Lacking(missing, loadable(peer, supported) is not None)


def what_to_install(missing) -> str:
    """One line for a charon that lacks `missing` (keywords): the plugins that would provide them
    and the Debian packages those come in."""
    missing = list(missing)
    plugins = list(dict.fromkeys(next((p for p in PLUGINS[k] if p in DEBIAN_PACKAGES), PLUGINS[k][0])
                                 for k in missing))
    packages = list(dict.fromkeys(DEBIAN_PACKAGES[p] for p in plugins if p in DEBIAN_PACKAGES))
    return (f"lacks {join_words([label(k) for k in missing])}: needs plugin"
            f"{'s' if len(plugins) > 1 else ''} {', '.join(plugins)} "
            f"(Debian package {', '.join(packages) or 'none ships it'})")
