"""The API's OpenAPI 3.1 document, built from the peer form's fields (webui/peer_json.py) and the
driver's result types, so what it promises is what the code does (a test checks each endpoint's
answers against it)."""
from __future__ import annotations

import dataclasses
import functools
import types
import typing

from webui import drivers, peer_json

VERSION = "1"


def _type_schema(annotation) -> dict:
    """JSON Schema of a result type's field (str, int, bool, tuples and nested dataclasses)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [_type_schema(a) for a in args if a is not type(None)]
        schema = options[0] if len(options) == 1 else {"anyOf": options}
        if type(None) in args:
            schema = {"anyOf": [schema, {"type": "null"}]}
        return schema
    if origin is tuple:
        return {"type": "array", "items": _type_schema(args[0])}
    if dataclasses.is_dataclass(annotation):
        return {"$ref": f"#/components/schemas/{annotation.__name__}"}
    return {str: {"type": "string"}, int: {"type": "integer"}, bool: {"type": "boolean"}}[annotation]


def _dataclass_schema(cls) -> dict:
    hints = typing.get_type_hints(cls)
    props = {f.name: _type_schema(hints[f.name]) for f in dataclasses.fields(cls)}
    return {"type": "object", "properties": props, "required": list(props),
            "additionalProperties": False}


RESULT_TYPES = (drivers.ChildSA, drivers.IkeSA, drivers.Connection, drivers.IPsecStatus,
                drivers.Address, drivers.Interface, drivers.Route, drivers.RoutingRule,
                drivers.Routes, drivers.Step)


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR = _json(_ref("Error"), "What went wrong, in words.")
INVALID = _json(_ref("Invalid"), "The body is invalid: the form's messages, by field.")
NOT_FOUND = _json(_ref("Error"), "There is no peer by that name.")
DRIVER_DOWN = _json(_ref("Error"), "strongSwan or the kernel could not be asked (503), or refused (502).")
NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
WRITTEN = {"type": "object", "required": ["changed", "peer"], "properties": {
    "changed": {"type": "boolean"}, "peer": _ref("Peer"), "applied": {"type": "boolean"},
    "not_applied": {"type": "string"},
    "warnings": {"type": "object", "description": "Saved, but worth a look: advice by field "
                 "(a key that is easy to guess, say).",
                 "additionalProperties": {"type": "array", "items": {"type": "string"}}}}}
MESSAGE = {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}}


def _op(summary: str, responses: dict, body: dict | None = None, parameters=()) -> dict:
    op = {"summary": summary, "responses": {**responses, "401": ERROR, "429": ERROR}}
    if body is not None:
        op["responses"]["400"] = ERROR  # not JSON at all
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if parameters:
        op["parameters"] = list(parameters)
    return op


@functools.cache
def document() -> dict:
    peer_in = peer_json.peer_schema(for_input=True)
    new_peer = dict(peer_in, required=peer_json.required_fields())
    state = {"type": "object", "properties": {
        "enabled": {"type": "boolean"}, "state": {"type": "string"},
        "established_for": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "bytes_in": {"type": "integer"}, "bytes_out": {"type": "integer"},
        "reason": {"type": "string"}, "not_applied": {"type": "string"},
        "label": {"type": "string"}, "detail": {"type": "string"}}}
    schemas = {cls.__name__: _dataclass_schema(cls) for cls in RESULT_TYPES}
    schemas["Backup"] = {"type": "object", "required": ["format", "schema_version", "peers"],
                         "properties": {"format": {"type": "string"},
                                        "schema_version": {"type": "integer"},
                                        "keys_included": {"type": "boolean"},
                                        "peers": {"type": "array", "items": {"type": "object"}}}}
    restored = {"type": "object", "required": ["changed", "changes", "steps"], "properties": {
        "changed": {"type": "boolean"}, "mode": {"type": "string"}, "dry_run": {"type": "boolean"},
        "unchanged": {"type": "integer"}, "changes": {"type": "array", "items": {"type": "object"}},
        "steps": {"type": "array", "items": _ref("Step")}}}
    schemas.update({
        "Peer": peer_json.peer_schema(for_input=False),
        "PeerInput": peer_in,
        "NewPeer": new_peer,
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "Invalid": {"type": "object", "required": ["errors"], "properties": {"errors": {
            "type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}}},
    })
    tunnel = {"200": _json(MESSAGE, "What happened."), "404": NOT_FOUND, "502": DRIVER_DOWN,
              "503": DRIVER_DOWN}
    paths = {
        "/peers": {
            "get": _op("The peers, a page at a time, filtered by q", {"200": _json({
                "type": "object", "required": ["peers", "page", "pages", "per_page", "total"],
                "properties": {"peers": {"type": "array", "items": _ref("Peer")},
                               "page": {"type": "integer"}, "pages": {"type": "integer"},
                               "per_page": {"type": "integer"}, "total": {"type": "integer"},
                               "query": {"type": "string"}}}, "A page of peers.")},
                parameters=[{"name": "q", "in": "query", "schema": {"type": "string"}},
                            {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                            {"name": "per_page", "in": "query",
                             "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}]),
            "post": _op("Create a peer", {"201": _json(WRITTEN, "Created and applied."),
                                          "422": INVALID, "409": ERROR}, _ref("NewPeer")),
        },
        "/peers/{name}": {
            "get": _op("One peer, without its key", {"200": _json(_ref("Peer"), "The peer."),
                                                     "404": NOT_FOUND}, parameters=[NAME]),
            "put": _op("Create or replace the whole peer", {
                "200": _json(WRITTEN, "Replaced, or unchanged (changed: false)."),
                "201": _json(WRITTEN, "Created."), "422": INVALID, "409": ERROR},
                _ref("PeerInput"), [NAME]),
            "patch": _op("Change the fields given", {
                "200": _json(WRITTEN, "Changed, or unchanged (changed: false)."), "404": NOT_FOUND,
                "422": INVALID, "409": ERROR}, _ref("PeerInput"), [NAME]),
            "delete": _op("Delete a peer", {"200": _json({"type": "object", "properties": {
                "changed": {"type": "boolean"}}}, "Deleted."), "404": NOT_FOUND}, parameters=[NAME]),
        },
        "/peers/{name}/connect": {"post": _op("Bring the tunnel up", tunnel, parameters=[NAME])},
        "/peers/{name}/disconnect": {"post": _op("Take the tunnel down", tunnel, parameters=[NAME])},
        "/peers/{name}/rekey": {"post": _op("Rekey the tunnel", tunnel, parameters=[NAME])},
        "/status": {"get": _op("Each peer's tunnel state", {"200": _json({
            "type": "object", "required": ["peers", "error"], "properties": {
                "peers": {"type": "object", "additionalProperties": state},
                "error": {"type": "string"}, "version": {"type": "integer"},
                "as_of": {"anyOf": [{"type": "number"}, {"type": "null"}]}}},
            "States by peer name, from the monitor's snapshot.")})},
        "/ipsec/restart": {"post": _op("Restart IPsec and load every peer again", {"200": _json({
            "type": "object", "required": ["ok", "steps"], "properties": {
                "ok": {"type": "boolean"}, "steps": {"type": "array", "items": _ref("Step")}}},
            "The steps and their outcome.")})},
        "/ipsec/status": {"get": _op("Loaded connections and SAs", {
            "200": _json(_ref("IPsecStatus"), "The status."), "502": DRIVER_DOWN, "503": DRIVER_DOWN})},
        "/interfaces": {"get": _op("Network interfaces", {"200": _json({
            "type": "object", "required": ["interfaces"], "properties": {
                "interfaces": {"type": "array", "items": _ref("Interface")}}}, "The interfaces."),
            "502": DRIVER_DOWN, "503": DRIVER_DOWN})},
        "/routes": {"get": _op("Routes and policy rules", {
            "200": _json(_ref("Routes"), "The routes."), "502": DRIVER_DOWN, "503": DRIVER_DOWN})},
        "/backup": {"get": _op("A backup of every peer, without keys", {"200": _json(
            _ref("Backup"), "The backup document (the Backup page's file, keys left out).")})},
        "/restore": {"post": _op("Restore a backup document", {
            "200": _json(restored, "What changed (or would, with dry_run)."),
            "409": ERROR, "413": ERROR,
            "422": _json({"type": "object", "required": ["problems"], "properties": {
                "problems": {"type": "array", "items": {"type": "object", "properties": {
                    "where": {"type": "string"}, "field": {"type": "string"},
                    "message": {"type": "string"}}}}}}, "Nothing changed: every problem found.")},
            {"type": "object"},
            [{"name": "mode", "in": "query", "schema": {"type": "string", "enum": ["merge", "replace"]}},
             {"name": "dry_run", "in": "query", "schema": {"type": "string", "enum": ["true", "false"]}}])},
        "/openapi.json": {"get": _op("This document", {"200": _json({"type": "object"},
                                                                    "OpenAPI 3.1.")})},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Router IPsec API", "version": VERSION,
                 "description": "Peers and tunnels of this router's IPsec page. Every request "
                                "needs `Authorization: Bearer <token>` (made on the Tokens page)."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"token": []}],
        "components": {"schemas": schemas, "securitySchemes": {
            "token": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }
