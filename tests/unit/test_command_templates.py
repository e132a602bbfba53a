"""Quick-command fragments: one root element with a stable id, tunnel marked, text escaped."""
import pytest
from flask import render_template

from webui.drivers import Interface, Route, Routes
from webui.drivers.fake import FakeKernel
from webui.paging import route_page


@pytest.fixture(autouse=True)
def _request(app):
    with app.test_request_context("/"):
        yield


def test_interfaces_fragment_marks_the_tunnel():
    interfaces = FakeKernel().interfaces() + (Interface(9, "ipsec0", "tun", "unknown", 1400,
                                                        ipsec=True),)
    html = render_template("commands/_interfaces.html", interfaces=interfaces, peers=[])
    assert html.strip().startswith('<section class="output" id="output-interfaces"')
    assert html.count('<tr class="tunnel">') == 1 and "198.51.100.1/24" in html


def test_routes_fragment_labels_and_escapes_the_peer():
    routes = Routes(routes=(Route(4, "220", "203.0.113.0/24", device="ipsec0", peer="<b>hq"),),
                    rules=FakeKernel().routes().rules)
    html = render_template("commands/_routes.html", page=route_page(routes.routes, "", 1, 100),
                           rules=routes.rules)
    assert html.strip().startswith('<section class="output" id="output-routes"')
    assert "&lt;b&gt;hq" in html and "<b>hq" not in html
    assert "style=" not in html and "<script" not in html


@pytest.mark.parametrize("forced, local, remote, says", [
    (False, False, False, None),
    (True, True, False, "UDP encapsulation forced"),
    (False, True, False, "this router seems behind a NAT"),
    (False, False, True, "the other side seems behind a NAT (or forces UDP encapsulation)"),
])
def test_an_sa_shows_who_started_it_its_spis_and_nat(forced, local, remote, says):
    from webui.drivers import ChildSA, IkeSA
    sa = IkeSA("hq", 3, "ESTABLISHED", 2, initiator=False, reauth_in=100,
               nat_forced=forced, nat_local=local, nat_remote=remote,
               children=(ChildSA("hq", "INSTALLED", encap=forced or local or remote,
                                 spi_in="c1a2b3c4", spi_out="d5e6f708"),))
    html = render_template("commands/_ike_sa.html", sa=sa)
    assert "<dt>Started by</dt><dd>the other side</dd>" in html
    assert "<dt>Reauthenticate in</dt>" in html
    assert "SPI in c1a2b3c4 out d5e6f708" in html
    assert ("UDP-encapsulated" in html) == (says is not None)
    assert (f"<dt>NAT</dt><dd>{says}</dd>" in html) if says else "<dt>NAT</dt>" not in html


def test_a_tunnel_charon_is_starting_again_says_why_the_last_attempt_failed():
    from webui.drivers import TunnelState
    from webui.peers import Peer
    peer = Peer("hq", "192.0.2.1", "192.0.2.2", ("10.0.0.0/24",), ("10.1.0.0/24",), "k" * 20)
    states = {"hq": TunnelState("hq", "connecting", reason="the remote gateway is not responding")}
    html = render_template("ipsec/_state_cell.html", peer=peer, states=states, status_error="",
                           message="", not_applied={}, lacking={})
    assert "connecting</span> <small>again, after: the remote gateway is not responding</small>" in html
    html = render_template("ipsec/_state_cell.html", peer=peer, message="", not_applied={}, lacking={},
                           states={"hq": TunnelState("hq", "connecting")}, status_error="")
    assert "again, after" not in html


def test_a_deleted_child_sa_shows_no_negative_rekey_time():
    from webui.drivers import ChildSA, IkeSA
    sa = IkeSA("hq", 3, "ESTABLISHED", 2, children=(ChildSA("hq", "DELETED", rekey_in=-5),))
    assert '<td data-label="Rekey in"></td>' in render_template("commands/_ike_sa.html", sa=sa)
