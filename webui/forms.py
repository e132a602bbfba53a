"""Where a peer is validated: the peer form, its field rules, and the checks against other peers;
and the UI's other forms (signing in, changing the admin password).

The server is the authority on every rule; the HTML attributes (`required`, `pattern`, `maxlength`)
only mirror what they can. Every message here is shown next to its field.
"""
from __future__ import annotations

import dataclasses
import functools
import ipaddress
import re
import typing
import unicodedata
from typing import Sequence

from flask_wtf import FlaskForm
from wtforms import (BooleanField, HiddenField, IntegerField, PasswordField, RadioField,
                     SelectChoice, SelectField, SelectMultipleField, StringField, TextAreaField)
from wtforms.validators import (EqualTo, InputRequired, NumberRange, Optional, StopValidation,
                                ValidationError)
from wtforms.widgets import CheckboxInput, ListWidget

from webui import capabilities
from webui.auth import password_problem
from webui.peers import (ADVANCED_DEFAULTS, ANY_GATEWAY, CHILD_REKEY_DEFAULT, CHILD_REKEY_MAX,
                         CHILD_REKEY_MIN, DEFAULT_FIREWALL, DH_GROUPS, DPD_ACTIONS, DPD_MAX,
                         ENCRYPTION, ESP_DH_GROUPS, FIREWALL_CHOICES, FRAGMENTATION,
                         IKE_REKEY_DEFAULT, IKE_REKEY_MAX, IKE_REKEY_MIN, INTEGRITY, PRESETS,
                         PROPOSAL_FIELDS, START_ACTIONS, Peer, applicable_integrity,
                         proposal_problems)

# The "-" is escaped: browsers compile the HTML pattern attribute with the `v` flag, where a bare
# "-" at the end of a class is a syntax error (and the whole attribute is then ignored).
NAME_PATTERN = r"[A-Za-z][A-Za-z0-9_\-]{0,31}"
# Said next to the field, and by the browser when the pattern refuses a name (its `title`).
NAME_RULE = "1–32 letters, digits, _ or -, starting with a letter"
_NAME_RE = re.compile(NAME_PATTERN)
# A DNS name: labels of letters, digits and inner hyphens, dot-separated, at most 253 characters.
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_DNS_RE = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")
PSK_MIN, PSK_MAX, PSK_HINT = 8, 256, 20
# Server-side bounds on every text field, checked before anything else looks at it. Without
# them one oversized ID is stored, and every later load of the peers into charon fails on it.
MAX_CHARS = {"name": 32, "local_id": 253, "peer_id": 253, "local_ip": 45, "remote_gateway": 253,
             "local_networks": 2048, "remote_networks": 2048, "psk": PSK_MAX}


# --- Field rules, usable without a form ----------------------------------------------------------

def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # ipaddress accepts a zone after "%" with any characters in it (commas, quotes, newlines):
    # charon would split "2001:db8::4%x,192.0.2.2" into two addresses. A tunnel endpoint or ID
    # never needs a link-local scope, so scoped addresses are refused outright.
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def unusable_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why `ip` cannot be a tunnel's endpoint (it is no host's address on a network), or None."""
    if ip.is_unspecified:
        return f"{ip} stands for \"no address\"; enter an address of a host on the network."
    if ip.is_loopback:
        return f"{ip} is a loopback address: it never leaves the host it is on."
    if ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        return f"{ip} is a multicast or broadcast address, not one host's address."
    return None


def is_dns_name(text: str) -> bool:
    return len(text) <= 253 and bool(_DNS_RE.fullmatch(text)) and not text.replace(".", "").isdigit()


def check_identity(text: str) -> None:
    """An IKE identity: an IP address, a DNS name, or user@dns.name."""
    if parse_ip(text) or is_dns_name(text):
        return
    user, at, domain = text.partition("@")
    if at and re.fullmatch(r"[A-Za-z0-9._%+-]{1,64}", user) and is_dns_name(domain):
        return
    raise ValidationError("Enter an IP address, a DNS name (vpn.example.com) or an e-mail style "
                          "ID (user@example.com); spaces, quotes and other symbols are not allowed.")


def parse_networks(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """One or more CIDR prefixes separated by commas or newlines; host bits set is an error."""
    items = [item.strip() for item in re.split(r"[,\n\r]+", text) if item.strip()]
    if not items:
        raise ValidationError("Enter at least one network, e.g. 10.1.0.0/24.")
    if len(items) > 32:
        raise ValidationError("At most 32 networks per side.")
    networks = []
    for item in items:
        if "%" in item:
            raise ValidationError(f"{_short(item)} has a zone (after %); scoped addresses cannot "
                                  "be tunnel networks.")
        if "/" not in item:
            raise ValidationError(f"{_short(item)} has no prefix length; write it as a CIDR "
                                  "prefix, e.g. 10.1.0.0/24 (or /32 for one host).")
        try:
            net = ipaddress.ip_network(item)
        except ValueError:
            try:
                suggestion = ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValidationError(f"{_short(item)} is not a CIDR prefix such as 10.1.0.0/24"
                                      f"{_invisible(item)}.")
            raise ValidationError(f"{item} has host bits set; did you mean {suggestion}?")
        if net in networks:
            raise ValidationError(f"{net} is listed twice.")
        clash = next((n for n in networks if overlapping(n, net)), None)
        if clash is not None:
            # One network inside another says nothing new, and the firewall's interval sets
            # refuse overlapping elements: list the larger one alone.
            raise ValidationError(f"{net} overlaps {clash}, listed too; keep only the larger one.")
        networks.append(net)
    return networks


@functools.lru_cache(maxsize=4096)
def stored_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A stored peer's network, parsed once: every save checks against every other peer's."""
    return ipaddress.ip_network(text)


def overlapping(a, b) -> bool:
    return a.version == b.version and a.overlaps(b)


def _invisible(text: str) -> str:
    """Where a pasted value hides a character that cannot be seen (a zero-width space from a wiki
    or PDF), said so: the value looks right otherwise. "" when there is none."""
    for i, char in enumerate(text):
        if unicodedata.category(char) in ("Cf", "Cc", "Zs", "Zl", "Zp") and char != " ":
            name = unicodedata.name(char, "a control character")
            where = f"after {_short(text[:i])}" if i else "at the start"
            return f": it contains an invisible character ({name}, U+{ord(char):04X}) {where}"
    return ""


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def seconds(low: int, high: int, message: str) -> list:
    """Validators for a whole number of seconds from `low` to `high`. A field left out of the
    submission keeps its default (a script written before the field existed); one sent empty or
    wrong is refused with `message`. The NumberRange is also what the API's schema publishes."""
    def whole_number(form, field):
        if field.data is None:
            field.errors[:] = []  # WTForms' own "Not a valid integer value." says less than ours
            raise StopValidation(message)
    return [whole_number, NumberRange(low, high, message)]


# --- The form ------------------------------------------------------------------------------------

class CheckboxGroup(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()

    def pre_validate(self, form):
        # The choices are what this charon supports: a value outside them (a restored backup's,
        # say) is named, with why it is not offered.
        offered = {choice.value for choice in self.choices}
        unknown = [value for value in self.data or () if value not in offered]
        if unknown:
            raise ValidationError(f"{', '.join(unknown)}: not supported by this strongSwan, or "
                                  "not a choice here.")
        # A browser never sends a box twice; a script (the API, a restored file) may, and it
        # would be stored so.
        seen = set()
        for value in self.data or ():
            if value in seen:
                raise ValidationError(f"{value} is listed twice.")
            seen.add(value)


def _choices(algorithms) -> list[SelectChoice]:
    # Weak choices are marked by the template (a "weak" tag next to the label), not in the label.
    return [SelectChoice(a.keyword, a.label) for a in algorithms]


class PeerForm(FlaskForm):
    """Add or edit a peer. `validate_peer(others, editing)` adds the checks against other peers."""

    name = StringField("Name", validators=[InputRequired("Give the peer a name.")])
    # No Optional(): it would stop the chain before validate_local_id, letting a blank or missing
    # ID through raw (whitespace to charon, null to the store).
    local_id = StringField("Local ID")
    peer_id = StringField("Peer ID")
    ike_version = RadioField("Key exchange", choices=[SelectChoice("2", "IKEv2"), SelectChoice("1", "IKEv1")], default="2")
    local_ip = StringField("Local IP", validators=[InputRequired("Enter this router's address.")])
    remote_gateway = StringField("Remote gateway",
                                 validators=[InputRequired("Enter the other side's address.")])
    local_networks = TextAreaField("Local networks",
                                   validators=[InputRequired("Enter at least one network.")])
    remote_networks = TextAreaField("Remote networks",
                                    validators=[InputRequired("Enter at least one network.")])
    ike_encryption = CheckboxGroup("IKE encryption", choices=_choices(ENCRYPTION),
                                   default=PRESETS["modern"]["ike_encryption"])
    ike_integrity = CheckboxGroup("IKE integrity", choices=_choices(INTEGRITY),
                                  default=PRESETS["modern"]["ike_integrity"])
    ike_dh_groups = CheckboxGroup("IKE DH groups", choices=_choices(DH_GROUPS),
                                  default=PRESETS["modern"]["ike_dh_groups"])
    esp_encryption = CheckboxGroup("ESP encryption", choices=_choices(ENCRYPTION),
                                   default=PRESETS["modern"]["esp_encryption"])
    esp_integrity = CheckboxGroup("ESP integrity", choices=_choices(INTEGRITY),
                                  default=PRESETS["modern"]["esp_integrity"])
    esp_dh_groups = CheckboxGroup("ESP DH groups (PFS)", choices=_choices(ESP_DH_GROUPS),
                                  default=PRESETS["modern"]["esp_dh_groups"])
    psk = PasswordField("Pre-shared key")
    keying_retries = IntegerField("Keying retries", default=3, validators=[
        InputRequired("Enter a number from 0 to 100 (0 = retry forever)."),
        NumberRange(0, 100, "Enter a number from 0 to 100 (0 = retry forever).")])
    firewall = CheckboxGroup("Allow traffic from the tunnel to", choices=[SelectChoice(*c) for c in FIREWALL_CHOICES],
                             default=DEFAULT_FIREWALL)
    enabled = BooleanField("Enabled", default=True)
    # Advanced: each default is today's behaviour; the group opens when one is changed.
    dpd_delay = IntegerField("Dead peer detection interval (s)", default=30, validators=seconds(
        0, DPD_MAX, f"Enter a number of seconds from 0 (off) to {DPD_MAX}."))
    dpd_action = SelectField("When the other side is found dead",
                             choices=[SelectChoice(*c) for c in DPD_ACTIONS], default="restart")
    ike_rekey_time = IntegerField("IKE SA rekey time (s)", default=IKE_REKEY_DEFAULT,
                                  validators=seconds(IKE_REKEY_MIN, IKE_REKEY_MAX,
                                                     f"Enter {IKE_REKEY_MIN} to {IKE_REKEY_MAX} "
                                                     "seconds (5 minutes to 7 days)."))
    child_rekey_time = IntegerField("Tunnel (CHILD SA) rekey time (s)", default=CHILD_REKEY_DEFAULT,
                                    validators=seconds(CHILD_REKEY_MIN, CHILD_REKEY_MAX,
                                                       f"Enter {CHILD_REKEY_MIN} to {CHILD_REKEY_MAX} "
                                                       "seconds (1 minute to 1 day)."))
    ike_reauth = BooleanField("Reauthenticate instead of rekeying (IKEv2)", default=False)
    start_action = RadioField("Start the tunnel", choices=[SelectChoice(*c) for c in START_ACTIONS],
                              default="start")
    encap = BooleanField("Force UDP encapsulation (NAT-T even without NAT)", default=False)
    # Negative, as OPNsense's "Disable MOBIKE": a box left out of a post keeps MOBIKE on.
    disable_mobike = BooleanField("Turn MOBIKE off (IKEv2)", default=False)
    fragmentation = SelectField("IKE fragmentation",
                                choices=[SelectChoice(*c) for c in FRAGMENTATION], default="yes")
    aggressive = BooleanField("IKEv1 aggressive mode", default=False)

    ADVANCED = ("keying_retries",) + tuple(ADVANCED_DEFAULTS)

    # Issue 18: a save that can be made but cannot work as meant is held back with a warning
    # next to the field until the admin ticks this.
    save_anyway = BooleanField("Save anyway, despite the warnings")

    def __init__(self, *args, editing: Peer | None = None,
                 supported: frozenset[str] | None = None, key_optional: bool = False,
                 router_addresses: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.editing = editing
        # The name of the peer this form edited, when it was deleted meanwhile (peers.gone).
        self.gone = ""
        # A restored peer may come without a key (webui/backup.py): it is then saved disabled.
        self.key_optional = key_optional
        self.psk_hint = ""
        # address -> interface, for the local IP warning; None when the kernel cannot be asked.
        self.router_addresses = router_addresses
        self.warnings: dict[str, list[str]] = {}
        self.supported = supported
        self.presets = capabilities.presets(supported)
        # A stored peer that needs what this charon lacks says so on its form.
        self.lacking = capabilities.check(editing, supported) if editing else None
        if supported is not None:
            self._offer_only(supported)

    @classmethod
    def blank(cls, supported: frozenset[str] | None = None) -> "PeerForm":
        """The new-peer form, its algorithms the Modern preset as this charon can honour it."""
        choices = capabilities.preset("modern", supported)
        return cls(formdata=None, supported=supported,
                   data={field: list(keywords) for field, keywords in choices.items()})

    ALGORITHM_FIELDS = ("ike_encryption", "ike_integrity", "ike_dh_groups",
                        "esp_encryption", "esp_integrity", "esp_dh_groups")

    def _offer_only(self, supported: frozenset[str]) -> None:
        """Offer only what this charon reports it can do (get-algorithms), so a proposal it cannot
        honour is never offered. A stored peer's own choices stay visible, marked, so an edit
        shows them rather than silently dropping them."""
        for name in self.ALGORITHM_FIELDS:
            field = getattr(self, name)
            kept = set(getattr(self.editing, name, ()))
            choices = []
            for choice in field.choices:
                if choice.value in supported:
                    choices.append(choice)
                elif choice.value in kept:
                    choices.append(SelectChoice(choice.value,
                                                f"{choice.label} (not supported by this strongSwan)"))
            field.choices = choices

    # Single-field rules (WTForms calls validate_<field> after the field's own validators).

    def validate_name(self, field):
        field.data = (field.data or "").strip()
        if not _NAME_RE.fullmatch(field.data):
            raise ValidationError(NAME_RULE + ".")

    def validate_local_id(self, field):
        field.data = (field.data or "").strip()
        if field.data:
            check_identity(field.data)

    validate_peer_id = validate_local_id

    def validate_local_ip(self, field):
        field.data = (field.data or "").strip()
        local = parse_ip(field.data)
        if not local:
            raise ValidationError("Enter an IPv4 or IPv6 address, e.g. 192.0.2.1.")
        if why := unusable_address(local):
            raise ValidationError(why)

    def validate_remote_gateway(self, field):
        field.data = (field.data or "").strip()
        if field.data.lower() in ("any", ANY_GATEWAY):
            field.data = ANY_GATEWAY  # the checks that need the other fields are in `validate`
            return
        gateway = parse_ip(field.data)
        if gateway is None and not is_dns_name(field.data):
            raise ValidationError("Enter an IPv4/IPv6 address or a DNS name, e.g. vpn.example.com.")
        if gateway and (why := unusable_address(gateway)):
            raise ValidationError(why)
        local = parse_ip(self.local_ip.data or "")
        if gateway and local and gateway.version != local.version:
            raise ValidationError(f"The local IP is IPv{local.version}; the gateway must be too.")
        if gateway and local and gateway == local:
            raise ValidationError("The remote gateway cannot be this router's own address.")

    def validate_local_networks(self, field):
        field.parsed = parse_networks(field.data or "")
        _check_routable(field.parsed)

    def validate_remote_networks(self, field):
        field.parsed = parse_networks(field.data or "")
        _check_routable(field.parsed)
        local = getattr(self.local_networks, "parsed", [])
        for remote in field.parsed:
            for own in local:
                if overlapping(remote, own):
                    raise ValidationError(f"{remote} overlaps the local network {own}; "
                                          "the two sides must be distinct.")
        if local and not _families(local) & _families(field.parsed):
            raise ValidationError(f"These are {_family_words(field.parsed)} and the local networks "
                                  f"{_family_words(local)}: no pair of them can be tunnelled.")

    def _check_proposal(self, field):
        """The proposal rules (webui/peers.py, the builders' own) for this one field."""
        problem = proposal_problems(1 if self.ike_version.data == "1" else 2,
                                    {name: self[name].data for name in PROPOSAL_FIELDS}).get(field.name)
        if problem:
            raise ValidationError(problem)

    # None beside DH groups is allowed: PFS is offered first and a peer without PFS is still
    # accepted (the "compatible" preset relies on it; see esp_proposals).
    validate_ike_encryption = validate_esp_encryption = _check_proposal
    validate_ike_dh_groups = validate_esp_dh_groups = _check_proposal

    def _check_integrity(self, field):
        """Integrity ticked beside AEAD ciphers alone is dropped, not refused (the form greys
        those boxes out), then the proposal rules as for the other fields."""
        ciphers = self[field.name.replace("_integrity", "_encryption")].data or ()
        field.data = list(applicable_integrity(ciphers, field.data or ()))
        self._check_proposal(field)

    validate_ike_integrity = validate_esp_integrity = _check_integrity

    def validate_psk(self, field):
        psk = field.data or ""
        if not psk:
            if self.key_optional:
                return
            if self.editing is None:
                raise ValidationError("Enter a pre-shared key (at least 8 characters).")
            if not self.editing.psk:
                raise ValidationError("This peer has no key yet (it was restored from a backup "
                                      "without keys): enter one.")
            return  # editing: empty keeps the stored key
        if not (PSK_MIN <= len(psk) <= PSK_MAX):
            raise ValidationError(f"The key must be {PSK_MIN}–{PSK_MAX} characters long.")
        if not all(" " <= ch <= "~" for ch in psk):
            raise ValidationError("Use printable ASCII characters only (no tabs, newlines or "
                                  "accented letters), so every IPsec peer can type it.")
        if len(psk) < PSK_HINT:
            self.psk_hint = (f"Short keys can be guessed offline from one captured handshake; "
                             f"{PSK_HINT} or more random characters are recommended.")
        elif len(set(psk)) < 6:
            self.psk_hint = ("This key repeats a few characters and can be guessed offline from "
                             "one captured handshake; use random characters (Generate).")
        if psk[:2].lower() in ("0x", "0s"):
            # Over VICI the key is sent as the bytes typed; strongSwan's own configuration files
            # (swanctl.conf, ipsec.secrets) read a secret starting 0x as hex and 0s as base64.
            self.psk_hint = (f"On a strongSwan peer, a key starting with {psk[:2]} is read as "
                             f"{'hex' if psk[1] in 'xX' else 'base64'} in its configuration files: "
                             "there, give it as the quoted text after converting it, or pick a key "
                             "that starts otherwise.")

    def validate_firewall(self, field):
        field.data = field.data or []

    # Advanced options that depend on one another or on the fields above.

    def validate(self, extra_validators=None) -> bool:
        # Every text field's length first, before any rule looks at its content.
        extra = {name: [_at_most(limit)] for name, limit in MAX_CHARS.items()}
        for name, validators in (extra_validators or {}).items():
            extra.setdefault(name, []).extend(validators)
        ok = super().validate(extra)
        for field, message in self._contradictions():
            field.errors = list(field.errors) + [message]
            ok = False
        return ok

    @property
    def lifetime_hint(self) -> str:
        """A warning by the lifetimes when they are not the ones the other side probably has."""
        if (self.ike_rekey_time.data, self.child_rekey_time.data) in (
                (IKE_REKEY_DEFAULT, CHILD_REKEY_DEFAULT), (None, CHILD_REKEY_DEFAULT),
                (IKE_REKEY_DEFAULT, None)):
            return ""
        return ("These differ from strongSwan's defaults (4 h and 1 h), which many gateways "
                "share: give the other side the same values (its configuration has them). "
                + ("IKEv1 gateways compare lifetimes and may refuse a proposal whose lifetime "
                   "differs from theirs." if self.ike_version.data == "1" else
                   "IKEv2 does not negotiate them: each side rekeys on its own schedule."))

    def _contradictions(self):
        """(field, message) for each combination of choices that cannot work together."""
        ikev1 = self.ike_version.data == "1"
        if self.remote_gateway.data == ANY_GATEWAY:
            if not self.peer_id.data or parse_ip(self.peer_id.data):
                yield self.peer_id, ("A remote gateway of \"any\" needs a peer ID that is not an "
                                     "IP address (e.g. branch.example.com): the other side is "
                                     "recognised by its ID alone.")
            if self.start_action.data != "none":
                yield self.start_action, ("With a remote gateway of \"any\" this router cannot "
                                          "know where to connect: choose \"Wait for the other "
                                          "side\".")
        if self.start_action.data == "none" and self.dpd_action.data == "restart":
            yield self.dpd_action, ("A responder-only peer never starts the tunnel itself: "
                                    "choose \"Close the tunnel\" (the other side restarts it).")
        if self.aggressive.data and not ikev1:
            yield self.aggressive, "Aggressive mode exists only in IKEv1."

    @property
    def advanced_open(self) -> bool:
        """The Advanced group is shown open when one of its fields is not at its default or
        has an error: nothing that matters about a peer is hidden."""
        return any(getattr(self, name).errors or getattr(self, name).data != getattr(
            self, name).default for name in self.ADVANCED)

    # Checks against the other peers.

    def validate_peer(self, others: Sequence[Peer], warn: bool = False) -> bool:
        """Full validation: the form's own rules, then uniqueness and remote-network overlap.
        With `warn` (the web form), what would save but not work as meant holds the save back
        too, until `save_anyway` is ticked."""
        if not self.validate():
            return False
        ok = self.check_against(others)
        if warn:
            self._warn()
        return ok and (not self.warnings or self.save_anyway.data)

    def check_against(self, others: Sequence[Peer]) -> bool:
        """What this charon supports, uniqueness and remote-network overlap, once the form's
        own rules passed."""
        ok = self._check_supported()
        for other in others:
            if self.editing is not None and other.name == self.editing.name:
                continue
            if other.name.lower() == self.name.data.lower():
                self.name.errors.append(f"A peer named {other.name} already exists.")
                ok = False
            clash = self._shares_ids_with(other)
            if clash:
                self.peer_id.errors.append(clash)
                ok = False
            theirs = [stored_network(n) for n in other.remote_networks]
            for mine in self.remote_networks.parsed:
                clash = next((t for t in theirs if overlapping(mine, t)), None)
                if clash is not None:
                    self.remote_networks.errors.append(
                        f"{mine} overlaps {clash}, a remote network of peer {other.name}.")
                    ok = False
                    break
        return ok

    def _warn(self) -> None:
        """What would save but not work as meant: said next to the field, overridable."""
        # An edit that leaves a warned value as it was saved is not warned again.
        kept = self.editing
        local_ip = str(parse_ip(self.local_ip.data))
        if (self.router_addresses is not None and local_ip not in self.router_addresses
                and not (kept and kept.local_ip == local_ip)):
            have = ", ".join(f"{a} on {i}" for a, i in list(self.router_addresses.items())[:6])
            self.warnings.setdefault("local_ip", []).append(
                f"{local_ip} is not an address of this router (it has {have or 'none'}). "
                "strongSwan could not send from it, and the tunnel would stay connecting.")
        local, remote = self.local_networks.parsed, self.remote_networks.parsed
        if kept and (kept.local_networks, kept.remote_networks) == (
                tuple(map(str, local)), tuple(map(str, remote))):
            return
        for side, mine, theirs in (("local", local, remote), ("remote", remote, local)):
            lonely = [n for n in mine if n.version not in _families(theirs)]
            if lonely:
                other = "remote" if side == "local" else "local"
                self.warnings.setdefault(f"{side}_networks", []).append(
                    f"{', '.join(map(str, lonely))}: no IPv{lonely[0].version} network on the "
                    f"{other} side to pair with, so {'it is' if len(lonely) == 1 else 'they are'} "
                    "not tunnelled.")

    def _check_supported(self) -> bool:
        """A field whose every choice this charon lacks makes no proposal (an edit can keep such
        choices: they stay visible, marked). Some of them lacking is allowed: the row says so."""
        ok = True
        for name in self.ALGORITHM_FIELDS:
            field = getattr(self, name)
            chosen = field.data or []
            if chosen and not any(capabilities.is_supported(k, self.supported) for k in chosen):
                field.errors.append("This strongSwan supports none of these: it lacks "
                                    f"{capabilities.join_words([capabilities.needs(k) for k in chosen])}.")
                ok = False
        return ok

    def _shares_ids_with(self, other: Peer) -> str:
        """charon finds a PSK by its owners (the two IDs): two enabled peers with the same pair and
        different keys leave it free to use either key for either peer."""
        if not (self.enabled.data and other.enabled):
            return ""
        local_id = self.local_id.data or str(parse_ip(self.local_ip.data))
        peer_id = self.peer_id.data or self.remote_gateway.data
        if (local_id, peer_id) != (other.effective_local_id, other.effective_peer_id):
            return ""
        psk = self.psk.data or (self.editing.psk if self.editing else "")
        if psk == other.psk:
            return ""
        return (f"Peer {other.name} has the same local and peer IDs ({local_id} and {peer_id}) "
                "with a different key, so strongSwan could use either key for either peer. Give "
                "this peer its own peer ID (or local ID), or use the same key.")

    def to_peer(self) -> Peer:
        """The validated peer, field by field as `Peer` declares them (one form field each, of
        the same name); an empty PSK on edit keeps the stored one."""
        values = {name: _from_form(self[name], kind) for name, kind in PEER_KINDS.items()}
        values["psk"] = self.psk.data or (self.editing.psk if self.editing else "")
        values["local_ip"] = str(parse_ip(self.local_ip.data))  # as the kernel writes it
        return Peer(**values)

    @classmethod
    def for_peer(cls, peer: Peer, supported: frozenset[str] | None = None) -> "PeerForm":
        """The edit form filled from a stored peer; the PSK is never put back into the form."""
        return cls(editing=peer, supported=supported, data={
            name: _to_form(getattr(peer, name), getattr(cls, name).field_class)
            for name in PEER_KINDS if name != "psk"})


# Each Peer field's type, in Peer's order: to_peer and for_peer convert by it and by the form
# field's class, so a new field is declared in Peer and in the form, and nowhere else.
PEER_KINDS = {f.name: typing.get_type_hints(Peer)[f.name] for f in dataclasses.fields(Peer)}


def _from_form(field, kind):
    if field.type == "TextAreaField":  # one network a line, parsed by its validator
        return tuple(str(n) for n in field.parsed)
    if kind is bool:
        return bool(field.data)
    if kind is int:
        return int(field.data)
    if kind is str:
        return field.data or ""
    return tuple(field.data)


def _to_form(value, field_class):
    if field_class is TextAreaField:
        return "\n".join(value)
    if field_class is RadioField and isinstance(value, int):
        return str(value)
    return list(value) if isinstance(value, tuple) else value


def _at_most(limit: int):
    def check(form, field):
        if isinstance(field.data, str) and len(field.data) > limit:
            raise StopValidation(f"At most {limit} characters; this has {len(field.data)}.")
    return check


def peer_problem(peer: Peer) -> tuple[str, str] | None:
    """(field, reason) when a stored peer breaks a field rule, else None: a peer that reached the
    store another way (an older version, a hand edit, a restore) is checked before it is loaded."""
    return _peer_problem(peer)


@functools.lru_cache(maxsize=4096)
def _peer_problem(peer: Peer) -> tuple[str, str] | None:
    name = "name"
    try:
        for name, limit in MAX_CHARS.items():
            value = getattr(peer, name)
            total = len(value) if isinstance(value, str) else sum(len(v) + 1 for v in value)
            if total > limit:
                return name, f"longer than {limit} characters"
        if not _NAME_RE.fullmatch(peer.name):
            return "name", "not a valid peer name"
        for name in ("local_id", "peer_id"):
            if not isinstance(getattr(peer, name), str):
                return name, "not text"
            if getattr(peer, name):
                check_identity(getattr(peer, name))
        if parse_ip(peer.local_ip) is None:
            return "local_ip", "not an IP address"
        if (peer.remote_gateway != ANY_GATEWAY and parse_ip(peer.remote_gateway) is None
                and not is_dns_name(peer.remote_gateway)):
            return "remote_gateway", "not an IP address or DNS name"
        for name in ("local_networks", "remote_networks"):
            parse_networks("\n".join(getattr(peer, name)))
    except ValidationError as e:
        return name, str(e)
    except TypeError:
        return name, "holds the wrong type"
    if not (PSK_MIN <= len(peer.psk) <= PSK_MAX and all(" " <= ch <= "~" for ch in peer.psk)):
        return "psk", "not a usable pre-shared key"
    return None


def _check_routable(networks) -> None:
    """Loopback and multicast never cross a tunnel: charon would install policies for nothing."""
    for net in networks:
        if net.is_loopback or net.is_multicast:
            kind = "loopback" if net.is_loopback else "multicast"
            raise ValidationError(f"{net} is a {kind} network; it cannot be sent through a tunnel.")


def _families(networks) -> set[int]:
    return {n.version for n in networks}


def _family_words(networks) -> str:
    return " and ".join(f"IPv{v}" for v in sorted(_families(networks))) + " only" * (len(_families(networks)) == 1)


# --- Signing in ----------------------------------------------------------------------------------
# The rules themselves (length, strength, the throttle) are webui/auth.py's.


class LoginForm(FlaskForm):
    user = StringField("User name", default="admin")
    password = PasswordField("Password")
    next = HiddenField()


class ChangePasswordForm(FlaskForm):
    current = PasswordField("Current password", [InputRequired()])
    new = PasswordField("New password", [InputRequired()])
    confirm = PasswordField("New password again", [InputRequired(), EqualTo("new", "The two entries differ.")])

    def validate_new(self, field):
        problem = password_problem(field.data or "")
        if problem:
            raise ValidationError(problem)
        if field.data == self.current.data:
            raise ValidationError("Choose a password different from the current one.")
