"""The words next to each refused field, exactly: they are what the administrator acts on, so a
message that changes by accident is a bug like any other. When a message is reworded on purpose,
change it here too."""
from __future__ import annotations

import html
import re

import pytest

from tests.conftest import valid_peer_form

ERROR = re.compile(r'<p class="error" id="([a-z_]+)-error">(.*?)</p>', re.S)
KEY_RULE = "The key must be 8–256 characters long."
IDENTITY = ("Enter an IP address, a DNS name (vpn.example.com) or an e-mail style ID "
            "(user@example.com); spaces, quotes and other symbols are not allowed.")
ONE_NETWORK = "Enter at least one network, e.g. 10.1.0.0/24."

# (form changes, field, the message shown next to it)
CASES = [
    (dict(name="1site"), "name", "1–32 letters, digits, _ or -, starting with a letter."),
    (dict(name="a" * 33), "name", "At most 32 characters; this has 33."),
    (dict(name="EXISTING"), "name", "A peer named existing already exists."),
    (dict(local_id="my id"), "local_id", IDENTITY),
    (dict(peer_id="x@"), "peer_id", IDENTITY),
    (dict(peer_id="a" * 254), "peer_id", "At most 253 characters; this has 254."),
    (dict(local_ip="router"), "local_ip", "Enter an IPv4 or IPv6 address, e.g. 192.0.2.1."),
    (dict(remote_gateway="not a host!"), "remote_gateway",
     "Enter an IPv4/IPv6 address or a DNS name, e.g. vpn.example.com."),
    (dict(remote_gateway="192.0.2"), "remote_gateway",
     "Enter an IPv4/IPv6 address or a DNS name, e.g. vpn.example.com."),
    (dict(peer_id=("a" * 63 + ".") * 3 + "a" * 62), "peer_id",
     "At most 253 characters; this has 254."),
    (dict(remote_gateway="2001:db8::2"), "remote_gateway",
     "The local IP is IPv4; the gateway must be too."),
    (dict(local_ip="2001:db8::1", remote_gateway="192.0.2.2"), "remote_gateway",
     "The local IP is IPv6; the gateway must be too."),
    (dict(remote_gateway="192.0.2.1"), "remote_gateway",
     "The remote gateway cannot be this router's own address."),
    (dict(local_networks=" , \n"), "local_networks", ONE_NETWORK),
    (dict(local_networks=",".join(f"10.{i}.0.0/16" for i in range(33))), "local_networks",
     "At most 32 networks per side."),
    (dict(local_networks="198.51.100.0"), "local_networks",
     "198.51.100.0 has no prefix length; write it as a CIDR prefix, e.g. 10.1.0.0/24 "
     "(or /32 for one host)."),
    (dict(local_networks="198.51.100.1/24"), "local_networks",
     "198.51.100.1/24 has host bits set; did you mean 198.51.100.0/24?"),
    (dict(local_networks="10.0.0.0/33"), "local_networks",
     "10.0.0.0/33 is not a CIDR prefix such as 10.1.0.0/24."),
    (dict(local_networks="x" * 50 + "/8"), "local_networks",
     "x" * 40 + "… is not a CIDR prefix such as 10.1.0.0/24."),
    (dict(local_networks="x" * 38 + "/8"), "local_networks",
     "x" * 38 + "/8 is not a CIDR prefix such as 10.1.0.0/24."),
    (dict(remote_gateway="192.0.2.9", remote_networks="10.50.0.0/16",
          psk="another-key-for-the-same-ids"), "peer_id",
     "Peer existing has the same local and peer IDs (192.0.2.1 and 192.0.2.9) with a different "
     "key, so strongSwan could use either key for either peer. Give this peer its own peer ID "
     "(or local ID), or use the same key."),
    (dict(local_networks="10.0.0.0/8, 10.0.0.0/8"), "local_networks", "10.0.0.0/8 is listed twice."),
    (dict(local_networks="10.0.0.0/8\n10.1.0.0/16"), "local_networks",
     "10.1.0.0/16 overlaps 10.0.0.0/8, listed too; keep only the larger one."),
    (dict(local_networks="fe80::/64%eth0"), "local_networks",
     "fe80::/64%eth0 has a zone (after %); scoped addresses cannot be tunnel networks."),
    (dict(remote_networks="198.51.100.128/25"), "remote_networks",
     "198.51.100.128/25 overlaps the local network 198.51.100.0/24; the two sides must be "
     "distinct."),
    (dict(remote_networks="10.99.1.0/24"), "remote_networks",
     "10.99.1.0/24 overlaps 10.99.0.0/16, a remote network of peer existing."),
    (dict(remote_networks="2001:db8:1::/48"), "remote_networks",
     "These are IPv6 only and the local networks IPv4 only: no pair of them can be tunnelled."),
    (dict(local_networks="2001:db8:2::/48", remote_networks="203.0.113.0/24, 10.9.0.0/16"),
     "remote_networks",
     "These are IPv4 only and the local networks IPv6 only: no pair of them can be tunnelled."),
    (dict(ike_encryption=[], ike_integrity=[]), "ike_encryption", "Choose at least one encryption algorithm."),
    (dict(esp_encryption=[]), "esp_encryption", "Choose at least one encryption algorithm."),
    (dict(ike_version="1", ike_encryption=["aes256gcm16"], ike_integrity=[]), "ike_encryption",
     "IKEv1 cannot use AES-GCM or ChaCha20-Poly1305 for IKE; choose AES-CBC (ESP may still use "
     "them)."),
    (dict(ike_integrity=[]), "ike_integrity",
     "AES-CBC and 3DES need an integrity algorithm; choose at least one."),
    (dict(ike_dh_groups=[]), "ike_dh_groups", "Choose at least one DH group."),
    (dict(esp_dh_groups=[]), "esp_dh_groups", "Choose at least one DH group, or None for no PFS."),
    (dict(psk=""), "psk", "Enter a pre-shared key (at least 8 characters)."),
    (dict(psk="seven77"), "psk", KEY_RULE),
    (dict(psk="x" * 257), "psk", "At most 256 characters; this has 257."),
    (dict(psk="tab\tinside-the-key"), "psk",
     "Use printable ASCII characters only (no tabs, newlines or accented letters), so every "
     "IPsec peer can type it."),
    (dict(keying_retries="101"), "keying_retries",
     "Enter a number from 0 to 100 (0 = retry forever)."),
    (dict(keying_retries="-1"), "keying_retries",
     "Enter a number from 0 to 100 (0 = retry forever)."),
    (dict(dpd_delay="3601"), "dpd_delay", "Enter a number of seconds from 0 (off) to 3600."),
    (dict(dpd_delay="-1"), "dpd_delay", "Enter a number of seconds from 0 (off) to 3600."),
    (dict(dpd_delay=""), "dpd_delay", "Enter a number of seconds from 0 (off) to 3600."),
    (dict(dpd_delay="soon"), "dpd_delay", "Enter a number of seconds from 0 (off) to 3600."),
    (dict(ike_rekey_time="299"), "ike_rekey_time",
     "Enter 300 to 604800 seconds (5 minutes to 7 days)."),
    (dict(ike_rekey_time="604801"), "ike_rekey_time",
     "Enter 300 to 604800 seconds (5 minutes to 7 days)."),
    (dict(child_rekey_time="59"), "child_rekey_time",
     "Enter 60 to 86400 seconds (1 minute to 1 day)."),
    (dict(child_rekey_time="86401"), "child_rekey_time",
     "Enter 60 to 86400 seconds (1 minute to 1 day)."),
    (dict(start_action="none"), "dpd_action",
     "A responder-only peer never starts the tunnel itself: choose \"Close the tunnel\" "
     "(the other side restarts it)."),
    (dict(aggressive="y"), "aggressive", "Aggressive mode exists only in IKEv1."),
    (dict(remote_gateway="any", peer_id="192.0.2.9", start_action="none", dpd_action="clear"),
     "peer_id", "A remote gateway of \"any\" needs a peer ID that is not an IP address "
     "(e.g. branch.example.com): the other side is recognised by its ID alone."),
    (dict(remote_gateway="any", peer_id="branch.example.com"), "start_action",
     "With a remote gateway of \"any\" this router cannot know where to connect: choose "
     "\"Wait for the other side\"."),
    # A character pasted in that cannot be seen is named, with where it is: the value looks right.
    (dict(local_networks="\u200b10.1.0.0/24"), "local_networks",
     "\u200b10.1.0.0/24 is not a CIDR prefix such as 10.1.0.0/24: it contains an invisible "
     "character (ZERO WIDTH SPACE, U+200B) at the start."),
    (dict(local_networks="10.1.\t0.0/24"), "local_networks",
     "10.1.\t0.0/24 is not a CIDR prefix such as 10.1.0.0/24: it contains an invisible character "
     "(a control character, U+0009) after 10.1.."),
    (dict(local_networks="10.1.0.0\u00a0/24"), "local_networks",
     "10.1.0.0\u00a0/24 is not a CIDR prefix such as 10.1.0.0/24: it contains an invisible "
     "character (NO-BREAK SPACE, U+00A0) after 10.1.0.0."),
    (dict(local_networks="10.1.0.0\u2028/24"), "local_networks",
     "10.1.0.0\u2028/24 is not a CIDR prefix such as 10.1.0.0/24: it contains an invisible "
     "character (LINE SEPARATOR, U+2028) after 10.1.0.0."),
    (dict(local_networks="10.1.0.0\u2029/24"), "local_networks",
     "10.1.0.0\u2029/24 is not a CIDR prefix such as 10.1.0.0/24: it contains an invisible "
     "character (PARAGRAPH SEPARATOR, U+2029) after 10.1.0.0."),
    (dict(local_networks="y" * 45 + "\u200b/8"), "local_networks",
     "y" * 40 + "… is not a CIDR prefix such as 10.1.0.0/24: it contains an invisible character "
     "(ZERO WIDTH SPACE, U+200B) after " + "y" * 40 + "…."),
    # A scoped address is no endpoint: ipaddress takes anything after "%", commas included, and
    # charon would read "2001:db8::2%x,192.0.2.2" as two addresses.
    (dict(local_ip="2001:db8::1%eth0", remote_gateway="2001:db8::2"), "local_ip",
     "Enter an IPv4 or IPv6 address, e.g. 192.0.2.1."),
    (dict(local_ip="2001:db8::1", remote_gateway="2001:db8::2%x,192.0.2.2"), "remote_gateway",
     "Enter an IPv4/IPv6 address or a DNS name, e.g. vpn.example.com."),
    (dict(local_ip="127.0.0.1"), "local_ip",
     "127.0.0.1 is a loopback address: it never leaves the host it is on."),
    (dict(remote_gateway="224.0.0.5"), "remote_gateway",
     "224.0.0.5 is a multicast or broadcast address, not one host's address."),
    # Loopback and multicast never cross a tunnel.
    (dict(local_networks="198.51.100.0/24\n127.0.0.0/8"), "local_networks",
     "127.0.0.0/8 is a loopback network; it cannot be sent through a tunnel."),
    (dict(remote_networks="224.0.0.0/4"), "remote_networks",
     "224.0.0.0/4 is a multicast network; it cannot be sent through a tunnel."),
    # What a browser never sends but a script may: choices this charon lacks, a box twice.
    (dict(ike_dh_groups=["curve25519", "rot13", "rot26"]), "ike_dh_groups",
     "rot13, rot26: not supported by this strongSwan, or not a choice here."),
    (dict(esp_encryption=["aes256gcm16", "aes128gcm16", "aes256gcm16"]), "esp_encryption",
     "aes256gcm16 is listed twice."),
    # A space can be seen: the value is refused without talk of anything hidden.
    (dict(local_networks="10.1.0.0 /24"), "local_networks",
     "10.1.0.0 /24 is not a CIDR prefix such as 10.1.0.0/24."),
]


def messages(body: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for field, text in ERROR.findall(body):
        found.setdefault(field, []).append(html.unescape(text).strip())
    return found


@pytest.fixture
def with_existing(browser):
    r = browser.post("/peers", valid_peer_form(name="existing", remote_gateway="192.0.2.9",
                                               remote_networks="10.99.0.0/16"))
    assert r.status_code == 303
    return browser


@pytest.mark.parametrize("changes, field, message", CASES,
                         ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_the_message_next_to_the_field(with_existing, changes, field, message):
    r = with_existing.post("/peers", valid_peer_form(**changes), htmx=True)
    assert r.status_code == 422
    assert messages(r.get_data(as_text=True)) == {field: [message]}


def test_integrity_beside_aead_alone_is_saved_and_ignored(app, with_existing):
    """Issue 18: the form greys these boxes out; ticked anyway, they are dropped, not refused."""
    r = with_existing.post("/peers", valid_peer_form(esp_integrity=["sha256"]), htmx=True)
    assert r.status_code == 204
    assert app.extensions["webui"].store.get("branch-a").esp_integrity == ()


def test_a_short_key_is_saved_with_advice_beside_it(app, with_existing):
    r = with_existing.post("/peers", valid_peer_form(psk="nineteen-characters"), htmx=True)
    assert r.status_code == 204
    from webui.forms import PeerForm
    with app.test_request_context():
        for key, hint in (("nineteen-characters", "Short keys can be guessed offline from one "
                           "captured handshake; 20 or more random characters are recommended."),
                          ("twenty-characters-ok", "")):
            form = PeerForm(meta={"csrf": False}, formdata=None)
            form.psk.data = key
            form.validate_psk(form.psk)
            assert form.psk_hint == hint


HEX_HINT = ("On a strongSwan peer, a key starting with {} is read as {} in its configuration files: "
            "there, give it as the quoted text after converting it, or pick a key that starts "
            "otherwise.")


@pytest.mark.parametrize("key, hint", [
    ("twenty-characters-ok", ""),
    ("abcdeabcdeabcdeabcde", "This key repeats a few characters and can be guessed offline from "
                             "one captured handshake; use random characters (Generate)."),
    ("abcdefabcdefabcdefab", ""),
    ("0x00112233445566778899aabb", HEX_HINT.format("0x", "hex")),
    ("0X00112233445566778899AABB", HEX_HINT.format("0X", "hex")),
    ("0sAAECAwQFBgcICQoLDA0ODxAR", HEX_HINT.format("0s", "base64")),
    ("0SAAECAwQFBgcICQoLDA0ODxAR", HEX_HINT.format("0S", "base64")),
    ("x0sAAECAwQFBgcICQoLDA0ODx", ""),
])
def test_a_key_is_saved_with_what_a_strongswan_peer_would_make_of_it(app, key, hint):
    from webui.forms import PeerForm
    with app.test_request_context():
        form = PeerForm(meta={"csrf": False}, formdata=None)
        form.psk.data = key
        form.validate_psk(form.psk)
        assert form.psk_hint == hint


@pytest.mark.parametrize("key", ["abcd-123", "0123456789abcdef" * 16, "a key with spaces",
                                 "tilde~at-the-end~"])
def test_keys_at_the_rules_edges_are_accepted(with_existing, key):
    valid_peer_form(psk=key)  # registers the key with the leak watch
    r = with_existing.post("/peers", valid_peer_form(psk=key), htmx=True)
    assert r.status_code == 204, messages(r.get_data(as_text=True))


def test_editing_a_peer_restored_without_its_key_asks_for_one(app, with_existing):
    from webui.forms import PeerForm
    from webui.peers import Peer
    stored = app.extensions["webui"].store.get("existing")
    keyless = Peer(**{**stored.to_record(), "psk": "", "enabled": False})
    with app.test_request_context("/", method="POST", data=valid_peer_form(
            name="existing", remote_gateway="192.0.2.9", remote_networks="10.99.0.0/16", psk="")):
        form = PeerForm(meta={"csrf": False}, editing=keyless)
        assert not form.validate()
    assert form.errors == {"psk": ["This peer has no key yet (it was restored from a backup "
                                   "without keys): enter one."]}


def test_the_form_keeps_wtforms_extra_validators_after_its_own_length_rule(app):
    """validate(extra_validators=...) is WTForms' contract: the form adds its length rule first
    and keeps the caller's checks, on the field named."""
    from wtforms.validators import ValidationError
    from webui.forms import PeerForm

    def no_branch(form, field):
        if field.data.startswith("branch"):
            raise ValidationError("Not a branch here.")

    def ikev2_only(form, field):  # on a field without a length rule
        if field.data != "2":
            raise ValidationError("IKEv2 only here.")
    with app.test_request_context("/", method="POST", data=valid_peer_form(ike_version="1")):
        form = PeerForm(meta={"csrf": False})
        assert not form.validate(extra_validators={"name": [no_branch], "ike_version": [ikev2_only]})
        assert form.errors == {"name": ["Not a branch here."], "ike_version": ["IKEv2 only here."]}
    with app.test_request_context("/", method="POST", data=valid_peer_form(name="b" * 40)):
        form = PeerForm(meta={"csrf": False})
        assert not form.validate(extra_validators={"name": [no_branch]})
        assert form.errors == {"name": ["At most 32 characters; this has 40."]}


def test_thirty_two_networks_a_side_are_accepted(with_existing):
    thirty_two = "\n".join(f"10.{i}.0.0/16" for i in range(32))
    r = with_existing.post("/peers", valid_peer_form(local_networks=thirty_two), htmx=True)
    assert r.status_code == 204, messages(r.get_data(as_text=True))


def test_the_form_reads_wtforms_positional_form_data(app):
    from werkzeug.datastructures import MultiDict
    from webui.forms import PeerForm
    with app.test_request_context():
        form = PeerForm(MultiDict(valid_peer_form(name="positional")), meta={"csrf": False})
        assert form.validate(), form.errors
        assert form.to_peer().name == "positional"


def test_an_edit_that_keeps_its_key_is_checked_with_the_stored_key(with_existing):
    """Same IDs as another peer are fine with the same key, and an empty key field on edit
    means the stored key."""
    r = with_existing.post("/peers", valid_peer_form(name="twin", remote_gateway="192.0.2.8",
                                                     remote_networks="10.50.0.0/16"))
    assert r.status_code == 303
    r = with_existing.post("/peers/twin", valid_peer_form(
        name="twin", remote_gateway="192.0.2.9", remote_networks="10.50.0.0/16", psk=""),
        htmx=True)
    assert r.status_code == 204, messages(r.get_data(as_text=True))


def test_a_dns_name_of_the_longest_length_is_accepted(with_existing):
    longest = ("a" * 63 + ".") * 3 + "a" * 61
    assert len(longest) == 253
    r = with_existing.post("/peers", valid_peer_form(peer_id=longest, remote_gateway=longest),
                           htmx=True)
    assert r.status_code == 204, messages(r.get_data(as_text=True))


def test_the_same_ids_with_another_key_are_fine_when_one_of_the_peers_is_disabled(with_existing):
    r = with_existing.post("/peers", valid_peer_form(
        name="standby", remote_gateway="192.0.2.9", remote_networks="10.50.0.0/16",
        psk="another-key-for-the-same-ids", enabled=None), htmx=True)
    assert r.status_code == 204, messages(r.get_data(as_text=True))


def test_every_other_peer_is_checked_and_every_clash_reported(browser):
    for name, networks in (("alpha", "10.97.0.0/16"), ("beta", "10.98.0.0/16")):
        assert browser.post("/peers", valid_peer_form(
            name=name, remote_gateway=f"192.0.2.{len(name)}", remote_networks=networks,
            psk="key-of-" + name + "-0123456")).status_code == 303
    r = browser.post("/peers", valid_peer_form(name="BETA", remote_networks="10.97.1.0/24"),
                     htmx=True)
    assert messages(r.get_data(as_text=True)) == {
        "name": ["A peer named beta already exists."],
        "remote_networks": ["10.97.1.0/24 overlaps 10.97.0.0/16, a remote network of peer alpha."]}
    # editing the first peer still checks the ones after it
    r = browser.post("/peers/alpha", valid_peer_form(
        name="alpha", remote_gateway="192.0.2.5", remote_networks="10.98.5.0/24", psk=""),
        htmx=True)
    assert messages(r.get_data(as_text=True)) == {
        "remote_networks": ["10.98.5.0/24 overlaps 10.98.0.0/16, a remote network of peer beta."]}


def test_ids_in_upper_case_are_ids(with_existing):
    r = with_existing.post("/peers", valid_peer_form(
        name="upper", local_id="HQ.Office@Example.COM", peer_id="Branch@Example.ORG",
        remote_gateway="192.0.2.7", remote_networks="10.51.0.0/16"), htmx=True)
    assert r.status_code == 204, messages(r.get_data(as_text=True))


def test_an_edit_whose_every_choice_this_charon_lacks_is_refused_in_plain_words(app, browser):
    assert browser.post("/peers", valid_peer_form(
        name="old", ike_dh_groups=["curve25519"])).status_code == 303
    app.extensions["webui"].drivers.ipsec.supported = frozenset(
        {"aes256", "aes128", "aes256gcm16", "sha256", "sha1", "modp2048", "none"})
    r = browser.post("/peers/old", valid_peer_form(name="old", ike_dh_groups=["curve25519"],
                                                   esp_dh_groups=["modp2048"], psk=""), htmx=True)
    shown = messages(r.get_data(as_text=True))
    assert list(shown) == ["ike_dh_groups"]
    (message,) = shown["ike_dh_groups"]
    assert message.startswith("This strongSwan supports none of these: it lacks ")
    assert "Curve25519" in message and message.endswith(".")
