"""Quick-command fragments: one root element with a stable id, tunnel marked, text escaped."""
import pytest
from flask import render_template

from webui.drivers import Interface, Route, Routes
from webui.drivers.fake import FakeKernel


@pytest.fixture(autouse=True)
def _request(app):
    with app.test_request_context("/"):
        yield


def test_interfaces_fragment_marks_the_tunnel():
    interfaces = FakeKernel().interfaces() + (Interface(9, "ipsec0", "tun", "unknown", 1400,
                                                        ipsec=True),)
    html = render_template("commands/_interfaces.html", interfaces=interfaces, peers=[])
    assert html.strip().startswith('<section class="output" id="output-interfaces">')
    assert html.count('<tr class="tunnel">') == 1 and "198.51.100.1/24" in html


def test_routes_fragment_labels_and_escapes_the_peer():
    routes = Routes(routes=(Route(4, "220", "203.0.113.0/24", device="ipsec0", peer="<b>hq"),),
                    rules=FakeKernel().routes().rules)
    html = render_template("commands/_routes.html", routes=routes, peers=[])
    assert html.strip().startswith('<section class="output" id="output-routes">')
    assert "&lt;b&gt;hq" in html and "<b>hq" not in html
    assert "style=" not in html and "<script" not in html
