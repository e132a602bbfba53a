"""swanctl.conf text: the peers as the system's strongSwan loads them at boot, without the UI.

Pure, like `vici_messages`, and built FROM `vici_messages`: each connection section is the
`load-conn` message the UI sends, each secret the `load-shared` one, written in swanctl.conf(5)
syntax. `swanctl --load-all` parses the file back into the very same VICI messages, so charon
holds the same configuration whichever of the two loaded it: when the UI starts after a boot that
loaded the file, its reconcile finds every connection equal ("updated", not "replaced") and no
tunnel is renegotiated.

The syntax (strongSwan's settings parser, src/libstrongswan/settings/settings_lexer.l):
- A bare value ends at whitespace, `#` (a comment), `}` or a newline, so anything else is written
  as a double-quoted string, in which `\\`, `"`, newline, CR and tab are escaped (`\\\\`, `\\"`,
  `\\n`, `\\r`, `\\t`; a raw CR would be dropped). A NUL cannot be written at all: refused.
- swanctl splits the values of its list keys (`local_ts`, `proposals`, ...) at commas, quoted or
  not, so a list item holding a comma is refused, and a list under a key swanctl does not split
  is refused too (the file would load something else than VICI does).
- swanctl reads a secret starting with `0x` or `0s` as hex or base64: such a key is written as
  base64 (`0s...`), so it reaches charon as the same bytes VICI sends. Other keys are quoted.
- The secret's section name is its VICI id: `swanctl --load-all` unloads every shared key whose id
  is not a section of the files it read, and replaces those that are. Keeping the ids equal means a
  key changed in the UI replaces the key loaded at boot, rather than sitting beside it.
"""
from __future__ import annotations

import base64
import re
from typing import Iterable

from webui.drivers import vici_messages
from webui.peers import Peer

HEADER = """\
# Written by the router's IPsec web UI (WEBUI_SWANCTL_CONF) after every change: its enabled
# peers, for the system's strongSwan to load at boot (swanctl --load-all) when the UI is not
# running. Edit the peers in the UI: changes made here are overwritten.
"""
# The keys whose values swanctl sends as lists (swanctl's load_conns.c, is_list_key).
LIST_KEYS = frozenset({"local_addrs", "remote_addrs", "proposals", "esp_proposals",
                       "ah_proposals", "local_ts", "remote_ts", "vips", "pools", "groups",
                       "cert_policy"})
_BARE = re.compile(r"[A-Za-z0-9._:@/,*%+-]+")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class Secret(str):
    """A key: written by `secret`, not `quote` (see above)."""


class Unwritable(ValueError):
    """A value swanctl.conf cannot carry as VICI would; the message names the key."""


def quote(text: str, always: bool = False) -> str:
    """`text` as a swanctl.conf value: bare when it may be (unless `always`), else quoted."""
    if "\0" in text:
        raise Unwritable("a NUL character cannot be written to swanctl.conf")
    if _BARE.fullmatch(text) and not always:
        return text
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in text) + '"'


def secret(data: str) -> str:
    if data[:2].lower() in ("0x", "0s"):
        return "0s" + base64.b64encode(data.encode()).decode()
    return quote(data, always=True)


def section(name: str, body: dict, depth: int = 0) -> list[str]:
    """Nested `name { key = value }` lines; lists comma-separated, only under swanctl's list keys."""
    pad = "    " * depth
    lines = [f"{pad}{name} {{"]
    for key, value in body.items():
        if isinstance(value, dict):
            lines += section(key, value, depth + 1)
        else:
            lines.append(f"{pad}    {key} = {_value(key, value)}")
    return lines + [f"{pad}}}"]


def _value(key: str, value) -> str:
    if isinstance(value, Secret):
        return secret(value)
    if isinstance(value, list):
        if key not in LIST_KEYS:
            raise Unwritable(f"{key}: swanctl would not read this list as a list")
        if any("," in item for item in value):
            raise Unwritable(f"{key}: a list item with a comma would be split by swanctl")
        return quote(",".join(value))
    return quote(str(value))


def render(peers: Iterable[Peer]) -> str:
    """The swanctl.conf text for the enabled peers that have a key (load-conn and load-shared
    messages, as the UI sends them)."""
    connections, secrets = {}, {}
    for peer in peers:
        if not peer.enabled or peer.key_missing:
            continue
        try:
            connections.update(vici_messages.load_conn(peer))
        except vici_messages.InvalidProposal as err:
            raise Unwritable(f"peer {peer.name}: {err}") from None
        shared = vici_messages.load_shared(peer)
        owners = {f"id-{i}": owner for i, owner in enumerate(shared["owners"], start=1)}
        secrets[shared["id"]] = {**owners, "secret": Secret(shared["data"])}
    lines = section("connections", connections) + [""] + section("secrets", secrets)
    return HEADER + "\n" + "\n".join(lines) + "\n"
