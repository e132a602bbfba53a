"""A refusal travels as one exception, (field, reason), from the driver to the field: the admin
reads charon's own words once, and a proposal the rules refuse reads the same in the form and in
the builders."""
import html
import re

import pytest

from tests.conftest import valid_peer_form
from tests.unit.test_vici_transport import PEER, fake_charon  # noqa: F401 - a fixture
from webui.drivers import CommandFailed
from webui.drivers import strongswan
from webui.drivers import vici_messages as vm
from webui.forms import PeerForm
from webui.peers import Peer

ERRMSG = "invalid value for: esp_proposals, config discarded"


def test_charons_words_are_the_reason_and_its_field_comes_with_them(fake_charon, tmp_path):  # noqa: F811
    fake_charon.replies.update({"get-conns": ([], {"conns": []}),
                                "load-shared": ([], {"success": "yes"}),
                                "load-conn": ([], {"success": "no", "errmsg": ERRMSG})})
    with pytest.raises(CommandFailed) as err:
        strongswan.ViciDriver(fake_charon.path, data_dir=tmp_path).apply(PEER)
    assert (err.value.field, err.value.reason) == ("esp_encryption", ERRMSG)
    assert str(err.value) == f"strongSwan refused peer branch: {ERRMSG}"


def test_the_admin_reads_one_clean_sentence_next_to_the_field(app, browser, monkeypatch):
    def refuse(peer, previous_name=None, renew=False):
        raise CommandFailed(f"strongSwan refused peer {peer.name}: {ERRMSG}",
                            field="esp_encryption", reason=ERRMSG)
    monkeypatch.setattr(app.extensions["webui"].drivers.ipsec, "apply", refuse)
    r = browser.post("/peers", valid_peer_form())
    assert r.status_code == 422
    errors = dict(re.findall(r'<p class="error" id="([a-z_]+)-error">(.*?)</p>',
                             r.get_data(as_text=True), re.S))
    assert html.unescape(errors["esp_encryption"].strip()) == f"strongSwan refused this: {ERRMSG}"


PROPOSALS = [dict(ike_encryption=()), dict(ike_dh_groups=()), dict(esp_encryption=()),
             dict(esp_dh_groups=()), dict(ike_version=1, ike_encryption=("aes256gcm16",)),
             dict(ike_encryption=("aes256",), ike_integrity=()),
             dict(esp_encryption=("aes128",), esp_integrity=())]


@pytest.mark.parametrize("changes", PROPOSALS)
def test_the_form_and_the_builder_refuse_a_proposal_in_the_same_words(app, changes):
    peer = Peer(name="b", local_ip="192.0.2.1", remote_gateway="192.0.2.2",
                local_networks=("198.51.100.0/24",), remote_networks=("203.0.113.0/24",),
                psk="x" * 20, **changes)
    with pytest.raises(vm.InvalidProposal) as refused:
        vm.load_conn(peer)
    form_data = valid_peer_form(ike_version=str(peer.ike_version),
                                **{f: list(getattr(peer, f)) for f in PeerForm.ALGORITHM_FIELDS})
    with app.test_request_context(method="POST", data=form_data):
        form = PeerForm(meta={"csrf": False})
        form.validate()
    assert getattr(form, refused.value.field).errors == [str(refused.value)]
