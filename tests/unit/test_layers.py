"""The layers as the README's code map draws them: views go through the service (webui/apply.py)
and nothing else below it, no blueprint imports another, templates get plain data."""
import ast
import re
from pathlib import Path

import pytest

from tests.conftest import Browser

BLUEPRINTS = sorted((Path(__file__).parents[2] / "webui" / "blueprints").glob("*.py"))


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


@pytest.mark.parametrize("path", BLUEPRINTS, ids=lambda p: p.name)
def test_no_blueprint_imports_another(path):
    others = {f"webui.blueprints.{p.stem}" for p in BLUEPRINTS if p != path and p.stem != "__init__"}
    assert not imported(path) & others


@pytest.mark.parametrize("path", BLUEPRINTS, ids=lambda p: p.name)
def test_views_reach_neither_the_drivers_nor_the_store_past_the_service(path):
    text = path.read_text()
    assert not re.findall(r"\.drivers\.|\.store\.|extensions\[\"webui\"\]", text)


def test_without_javascript_the_status_panes_page_is_not_the_peer_tables(make_app):
    app = make_app(PEERS_PER_PAGE=2)
    browser = Browser(app.test_client())
    for i in range(3):
        app.extensions["webui"].add(_peer(i))
    page = browser.get("/commands/status?page=2").get_data(as_text=True)
    assert 'id="status-p002"' in page, "the status pane is on its page 2"
    assert 'id="peer-p000"' in page and 'id="peer-p002"' not in page, "the table on its first"


def _peer(i):
    from webui.peers import Peer
    return Peer(name=f"p{i:03d}", local_ip="192.0.2.1", remote_gateway=f"192.0.2.{10 + i}",
                local_networks=(f"10.0.{i}.0/24",), remote_networks=(f"10.1.{i}.0/24",),
                psk="x" * 20)


def test_the_form_has_a_field_for_each_field_of_the_peer_of_the_same_name():
    from webui.forms import PEER_KINDS, PeerForm
    from webui.peers import Peer
    import dataclasses
    assert list(PEER_KINDS) == [f.name for f in dataclasses.fields(Peer)]
    assert all(hasattr(getattr(PeerForm, name, None), "field_class") for name in PEER_KINDS)
