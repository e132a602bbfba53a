"""Every field of a peer survives the whole trip: the posted form, the store, the store read again
from disk by a new process, and the edit form, for several peers at once and after editing one."""
from __future__ import annotations

import dataclasses
from html.parser import HTMLParser

import pytest

from tests.conftest import Browser, valid_peer_form
from webui.peers import PRESETS, Peer
from webui.store import PeerStore


class FormFields(HTMLParser):
    """What a browser would submit from the page's peer form, as posted form data."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.fields: dict[str, list[str]] = {}
        self._in_form = False
        self._textarea: str | None = None
        self._select: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and attrs.get("id") == "peer-form":
            self._in_form = True
        if self._in_form and tag == "option" and self._select and "selected" in attrs:
            self.fields[self._select].append(attrs.get("value", ""))
        if not self._in_form or "name" not in attrs:
            return
        name = attrs["name"]
        if tag == "select":
            self._select = name
            self.fields.setdefault(name, [])
        if tag == "textarea":
            self._textarea = name
            self.fields.setdefault(name, []).append("")
        elif tag == "input":
            kind = attrs.get("type", "text")
            if kind in ("checkbox", "radio"):
                self.fields.setdefault(name, [])
                if "checked" in attrs:
                    self.fields[name].append(attrs.get("value", "on"))
            else:
                self.fields.setdefault(name, []).append(attrs.get("value") or "")

    def handle_data(self, data):
        if self._textarea:
            self.fields[self._textarea][-1] += data

    def handle_endtag(self, tag):
        if tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None
        elif tag == "form":
            self._in_form = False

    def as_posted(self) -> dict:
        """Single-valued fields as strings, lists for the checkbox groups; unchecked boxes absent,
        as a browser leaves them out."""
        posted = {}
        for name, values in self.fields.items():
            if name in MULTI:
                posted[name] = values
            elif values:
                # A browser reads CR LF as LF and drops a newline right after <textarea>.
                value = values[0].replace("\r\n", "\n")
                posted[name] = value[1:] if value.startswith("\n") else value
        return posted


BOXES = {"enabled", "ike_reauth", "encap", "disable_mobike", "aggressive"}
MULTI = {"ike_encryption", "ike_integrity", "ike_dh_groups", "esp_encryption", "esp_integrity",
         "esp_dh_groups", "firewall"}


def edit_form(browser, name) -> dict:
    page = browser.get(f"/peers/{name}/edit")
    assert page.status_code == 200
    return FormFields(page.get_data(as_text=True)).as_posted()


# Three peers that differ from each other and from the defaults in every field. Lists are posted in
# the order the form shows the boxes, as a browser sends them.
POSTED = [
    valid_peer_form(
        name="hq-v2", local_id="hq.example.com", peer_id="branch@example.org", ike_version="2",
        local_ip="192.0.2.1", remote_gateway="vpn.branch.example.net",
        local_networks="198.51.100.0/25\n198.51.100.128/26", remote_networks="203.0.113.0/24",
        ike_encryption=["aes256gcm16", "aes128"], ike_integrity=["sha384", "sha512"],
        ike_dh_groups=["ecp384", "modp3072"], esp_encryption=["chacha20poly1305"], esp_integrity=[],
        esp_dh_groups=["ecp256", "modp4096"], psk="first-peer-key-0123456789",
        keying_retries="0", firewall=["input"], enabled="y",
        dpd_delay="0", dpd_action="clear", ike_rekey_time="7200", child_rekey_time="1800",
        ike_reauth="y", start_action="trap", encap="y", disable_mobike="y",
        fragmentation="accept"),
    valid_peer_form(
        name="Old_Site-7", local_id="", peer_id="", ike_version="1",
        local_ip="192.0.2.10", remote_gateway="192.0.2.77",
        local_networks="10.10.0.0/16", remote_networks="10.20.0.0/16, 10.21.0.0/16",
        ike_encryption=["aes128", "3des"], ike_integrity=["sha256", "sha1"],
        ike_dh_groups=["modp2048", "modp1024"], esp_encryption=["aes256", "aes128"],
        esp_integrity=["sha1"], esp_dh_groups=["none"], psk="second-peer-key-9876543210",
        keying_retries="100", firewall=["forward_lan", "forward_wan"], enabled=None,
        dpd_delay="3600", dpd_action="trap", ike_rekey_time="28800", child_rekey_time="86400",
        start_action="none", fragmentation="no", aggressive="y"),
    valid_peer_form(
        name="six", local_id="2001:db8::1", peer_id="2001:db8::2", ike_version="2",
        local_ip="2001:db8::1", remote_gateway="2001:db8::2",
        local_networks="2001:db8:1::/48", remote_networks="2001:db8:2::/48\n2001:db8:3::/48",
        ike_encryption=["aes256"], ike_integrity=["sha256"], ike_dh_groups=["curve25519"],
        esp_encryption=["aes256gcm16", "aes128gcm16"], esp_integrity=[],
        esp_dh_groups=["curve25519"], psk="third-peer-key-abcdefghijk",
        keying_retries="7", firewall=[], enabled="y",
        dpd_delay="30", dpd_action="restart", ike_rekey_time="14400", child_rekey_time="3600",
        start_action="start", fragmentation="yes"),
]

# What each must become, written out field by field.
EXPECTED = [
    Peer(name="hq-v2", local_id="hq.example.com", peer_id="branch@example.org", ike_version=2,
         local_ip="192.0.2.1", remote_gateway="vpn.branch.example.net",
         local_networks=("198.51.100.0/25", "198.51.100.128/26"),
         remote_networks=("203.0.113.0/24",),
         ike_encryption=("aes256gcm16", "aes128"), ike_integrity=("sha384", "sha512"),
         ike_dh_groups=("ecp384", "modp3072"), esp_encryption=("chacha20poly1305",),
         esp_integrity=(), esp_dh_groups=("ecp256", "modp4096"), psk="first-peer-key-0123456789",
         keying_retries=0, firewall=("input",), enabled=True,
         dpd_delay=0, dpd_action="clear", ike_rekey_time=7200, child_rekey_time=1800,
         ike_reauth=True, start_action="trap", encap=True, disable_mobike=True,
         fragmentation="accept", aggressive=False),
    Peer(name="Old_Site-7", local_id="", peer_id="", ike_version=1,
         local_ip="192.0.2.10", remote_gateway="192.0.2.77",
         local_networks=("10.10.0.0/16",), remote_networks=("10.20.0.0/16", "10.21.0.0/16"),
         ike_encryption=("aes128", "3des"), ike_integrity=("sha256", "sha1"),
         ike_dh_groups=("modp2048", "modp1024"), esp_encryption=("aes256", "aes128"),
         esp_integrity=("sha1",), esp_dh_groups=("none",), psk="second-peer-key-9876543210",
         keying_retries=100, firewall=("forward_lan", "forward_wan"), enabled=False,
         dpd_delay=3600, dpd_action="trap", ike_rekey_time=28800, child_rekey_time=86400,
         ike_reauth=False, start_action="none", encap=False, disable_mobike=False,
         fragmentation="no", aggressive=True),
    Peer(name="six", local_id="2001:db8::1", peer_id="2001:db8::2", ike_version=2,
         local_ip="2001:db8::1", remote_gateway="2001:db8::2",
         local_networks=("2001:db8:1::/48",),
         remote_networks=("2001:db8:2::/48", "2001:db8:3::/48"),
         ike_encryption=("aes256",), ike_integrity=("sha256",), ike_dh_groups=("curve25519",),
         esp_encryption=("aes256gcm16", "aes128gcm16"), esp_integrity=(),
         esp_dh_groups=("curve25519",), psk="third-peer-key-abcdefghijk",
         keying_retries=7, firewall=(), enabled=True,
         dpd_delay=30, dpd_action="restart", ike_rekey_time=14400, child_rekey_time=3600,
         ike_reauth=False, start_action="start", encap=False, disable_mobike=False,
         fragmentation="yes", aggressive=False),
]


def add_all(browser):
    for form in POSTED:
        # 192.0.2.10 is no address of the fake router: the form warns, and this test saves anyway.
        r = browser.post("/peers", {**form, "save_anyway": "y"})
        assert r.status_code == 303, r.get_data(as_text=True)


def reopened(data_dir) -> dict[str, Peer]:
    """The store as the next start of the UI reads it."""
    return {p.name: p for p in PeerStore(data_dir / "peers.json").all()}


def without_defaults(peer: Peer, field: str) -> bool:
    return getattr(peer, field) != next(f for f in dataclasses.fields(Peer) if f.name == field).default


def test_the_examples_differ_from_the_defaults_and_each_other_in_every_field():
    """Otherwise a field dropped on the way could still come back equal."""
    for field in dataclasses.fields(Peer):
        if field.name not in ("name", "local_ip", "remote_gateway", "local_networks",
                              "remote_networks", "psk"):
            assert any(without_defaults(p, field.name) for p in EXPECTED), field.name
    for field in dataclasses.fields(Peer):
        assert len({getattr(p, field.name) for p in EXPECTED}) > 1, field.name


def test_every_field_survives_form_store_disk_and_edit_form(app, browser, data_dir, make_app):
    add_all(browser)
    store = app.extensions["webui"].store
    for expected in EXPECTED:
        assert store.get(expected.name) == expected
    assert reopened(data_dir) == {p.name: p for p in EXPECTED}

    again = Browser(make_app().test_client())  # the UI started anew on the same file
    for posted, expected in zip(POSTED, EXPECTED):
        shown = edit_form(again, expected.name)
        assert shown.pop("psk") == "", "the key is never put back into the form"
        for name, value in posted.items():
            if name == "psk":
                continue
            if name.endswith("_networks"):  # one per line, whatever separated them when posted
                assert shown[name] == "\n".join(getattr(expected, name)), name
            else:
                assert shown[name] == value, name
        for box in BOXES:
            assert (box in shown) == getattr(expected, box), box
        assert not set(shown) - set(posted) - {"csrf_token"}, "a field the test does not know"


def test_saving_an_unchanged_edit_form_changes_nothing(browser, data_dir):
    add_all(browser)
    before = (data_dir / "peers.json").read_bytes()
    for expected in EXPECTED:
        r = browser.post(f"/peers/{expected.name}", edit_form(browser, expected.name))
        assert r.status_code == 303, r.get_data(as_text=True)
    assert reopened(data_dir) == {p.name: p for p in EXPECTED}
    assert (data_dir / "peers.json").read_bytes() == before


@pytest.mark.parametrize("which", range(len(POSTED)))
def test_editing_one_peer_of_several_leaves_the_others_on_disk(browser, data_dir, which):
    add_all(browser)
    name = EXPECTED[which].name
    form = edit_form(browser, name)
    form.update(remote_gateway="192.0.2.200" if which != 2 else "2001:db8::200",
                keying_retries="42", psk="")
    assert browser.post(f"/peers/{name}", form).status_code == 303
    edited = dataclasses.replace(EXPECTED[which], remote_gateway=form["remote_gateway"],
                                 keying_retries=42)
    expected = {p.name: p for p in EXPECTED} | {name: edited}
    assert reopened(data_dir) == expected


def test_renaming_one_peer_of_several_keeps_the_others_and_its_key(browser, data_dir):
    add_all(browser)
    form = edit_form(browser, "six")
    form.update(name="six-renamed", psk="")
    assert browser.post("/peers/six", form).status_code == 303
    expected = {p.name: p for p in EXPECTED[:2]}
    expected["six-renamed"] = dataclasses.replace(EXPECTED[2], name="six-renamed")
    assert reopened(data_dir) == expected
    assert browser.get("/peers/six/edit").status_code == 404


def test_a_new_key_on_edit_replaces_the_stored_one(browser, data_dir):
    add_all(browser)
    form = edit_form(browser, "hq-v2")
    form["psk"] = "a-brand-new-key-for-hq-0001"
    valid_peer_form(psk=form["psk"])  # registers the key with the leak watch
    assert browser.post("/peers/hq-v2", form).status_code == 303
    assert reopened(data_dir)["hq-v2"].psk == "a-brand-new-key-for-hq-0001"
    assert reopened(data_dir)["six"].psk == "third-peer-key-abcdefghijk"


def test_a_form_that_may_go_without_a_key_makes_a_peer_without_one(app):
    """A restored peer whose backup left its key out (webui/backup.py): no key, not a made-up one."""
    from webui.forms import PeerForm
    with app.test_request_context("/", method="POST", data=valid_peer_form(psk="")):
        form = PeerForm(meta={"csrf": False}, key_optional=True)
        assert form.validate(), form.errors
        assert form.to_peer().psk == ""


def test_the_new_peer_form_is_the_modern_preset_and_valid_as_it_stands(browser, data_dir):
    shown = FormFields(browser.get("/peers/new").get_data(as_text=True)).as_posted()
    for field, keywords in PRESETS["modern"].items():
        assert shown[field] == list(keywords), field
    assert shown["ike_version"] == "2" and shown["keying_retries"] == "3"
    assert shown["firewall"] == ["forward_lan", "forward_wan"] and shown["enabled"] == "y"
    shown.update(name="fresh", local_ip="192.0.2.1", remote_gateway="192.0.2.2",
                 local_networks="198.51.100.0/24", remote_networks="203.0.113.0/24",
                 psk=valid_peer_form()["psk"])
    assert browser.post("/peers", shown).status_code == 303
    assert reopened(data_dir)["fresh"] == Peer(
        name="fresh", local_ip="192.0.2.1", remote_gateway="192.0.2.2",
        local_networks=("198.51.100.0/24",), remote_networks=("203.0.113.0/24",),
        psk=valid_peer_form()["psk"])


def test_the_new_peer_form_offers_the_modern_preset_as_this_charon_can_honour_it(app, browser):
    from webui import capabilities
    small = frozenset({"aes256", "aes128", "sha256", "sha1", "modp2048", "modp1024", "none"})
    app.extensions["webui"].drivers.ipsec.supported = small
    shown = FormFields(browser.get("/peers/new").get_data(as_text=True)).as_posted()
    expected = capabilities.preset("modern", small)
    assert expected["ike_dh_groups"] and "curve25519" not in expected["ike_dh_groups"]
    for field, keywords in expected.items():
        assert shown[field] == list(keywords), field


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("ike_version", ["1", "2"])
def test_every_preset_is_accepted_and_stored_as_chosen(browser, data_dir, preset, ike_version):
    chosen = {field: list(keywords) for field, keywords in PRESETS[preset].items()}
    r = browser.post("/peers", valid_peer_form(ike_version=ike_version, **chosen))
    assert r.status_code == 303, r.get_data(as_text=True)
    stored = reopened(data_dir)["branch-a"]
    assert {field: getattr(stored, field) for field in chosen} == PRESETS[preset]


# ESP PFS: one group, several groups, none (no PFS) alone, and PFS with a no-PFS fallback.
PFS_SHAPES = [["curve25519"], ["ecp256", "modp2048"], ["none"], ["modp2048", "none"]]


@pytest.mark.parametrize("groups", PFS_SHAPES, ids=["-".join(g) for g in PFS_SHAPES])
def test_every_valid_pfs_shape_is_accepted(browser, data_dir, groups):
    r = browser.post("/peers", valid_peer_form(esp_dh_groups=groups))
    assert r.status_code == 303, r.get_data(as_text=True)
    assert reopened(data_dir)["branch-a"].esp_dh_groups == tuple(groups)


@pytest.mark.parametrize("retries", ["0", "1", "100"])
def test_keying_retries_at_its_bounds_are_stored(browser, data_dir, retries):
    r = browser.post("/peers", valid_peer_form(keying_retries=retries))
    assert r.status_code == 303
    assert reopened(data_dir)["branch-a"].keying_retries == int(retries)


@pytest.mark.parametrize("firewall", [[], ["forward_lan"], ["forward_wan"], ["input"],
                                      ["forward_lan", "forward_wan", "input"]])
def test_the_firewall_choices_posted_are_the_ones_stored(browser, data_dir, firewall):
    r = browser.post("/peers", valid_peer_form(firewall=firewall))
    assert r.status_code == 303
    assert reopened(data_dir)["branch-a"].firewall == tuple(firewall)
