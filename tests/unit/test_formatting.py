"""The templates' url_for and csrf_token: the same answers as Flask's and flask-wtf's, only cheaper."""
import pytest
from flask import g, request
from flask_wtf.csrf import generate_csrf

from webui.formatting import csrf_token, fast_url_for

NAMES = ["site-b", "Branch_1.x", "a b", "ü", "x/y", "%41", "PLACEHOLDERxq7", ""]


@pytest.mark.parametrize("script_root", ["", "/router"])
def test_fast_url_for_builds_exactly_what_url_for_builds(app, script_root):
    fast = fast_url_for(app)
    rules = [r for r in app.url_map.iter_rules() if len(r.arguments) == 1]
    assert any(r.endpoint.startswith("peers.") for r in rules)
    with app.test_request_context("/", base_url=f"http://router.example{script_root}/"):
        assert request.script_root == script_root
        for rule in rules:
            (arg,) = rule.arguments
            for name in NAMES:
                if not name:
                    continue
                assert fast(rule.endpoint, **{arg: name}) == app.url_for(rule.endpoint, **{arg: name})
                for method in rule.methods - {"HEAD", "OPTIONS"}:
                    assert (fast(rule.endpoint, _method=method, **{arg: name})
                            == app.url_for(rule.endpoint, _method=method, **{arg: name}))
        assert fast("ipsec.index") == app.url_for("ipsec.index")
        assert fast("peers.delete", name="x", _method="DELETE") == script_root + "/peers/x"
        assert fast("peers.delete", name="x", _method="POST") == script_root + "/peers/x/delete"
        assert fast("static", filename="app.js", v="1") == app.url_for("static", filename="app.js", v="1")


def test_csrf_token_is_flask_wtfs(app):
    with app.test_request_context("/"):
        first = csrf_token()
        assert first == generate_csrf() == g.csrf_token == csrf_token()
