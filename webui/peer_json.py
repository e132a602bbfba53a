"""A peer as JSON, for the API: the same fields and rules as the peer form, derived from it.

What a valid peer is stays decided in one place, `webui/forms.py`: a JSON body is checked for its
shape here (known fields, JSON types), then turned into the form data a browser would post and
validated by `PeerForm` itself, so the API answers with the form's own messages. The JSON Schema
the OpenAPI document publishes is derived from the same form fields, so neither can drift.
"""
from __future__ import annotations

import functools
from dataclasses import fields as dataclass_fields
from typing import Any

from werkzeug.datastructures import MultiDict
from wtforms import (BooleanField, IntegerField, PasswordField, RadioField, SelectFieldBase,
                     SelectMultipleField, StringField, TextAreaField)
from wtforms.fields.core import UnboundField
from wtforms.validators import InputRequired, Length, NumberRange

from webui.forms import PeerForm
from webui.peers import Peer

WRITE_ONLY = frozenset({"psk"})
READ_ONLY = {"psk_set": {"type": "boolean", "readOnly": True,
                         "description": "A pre-shared key is stored (it is never sent back)."}}
_PEER_TYPES = {f.name: f.type for f in dataclass_fields(Peer)}


@functools.cache
def _unbound_fields() -> tuple[tuple[str, Any], ...]:
    """The form's fields that are peer fields, in the form's order (the CSRF token is not one).
    The form class does not change while the process runs: scanned once, not per API request."""
    found = [(name, getattr(PeerForm, name)) for name in dir(PeerForm) if name in _PEER_TYPES]
    unbound = [(name, field) for name, field in found if isinstance(field, UnboundField)]
    return tuple(sorted(unbound, key=lambda item: item[1].creation_counter))


def _choices(unbound) -> list[str]:
    return [str(getattr(choice, "value", None) or choice[0]) for choice in unbound.kwargs.get("choices", ())]


def _is_int(name: str) -> bool:
    return _PEER_TYPES[name] in ("int", int)


def field_schema(name: str, unbound) -> dict:
    """The JSON Schema of one peer field, from its form field."""
    kind = unbound.field_class
    label = unbound.args[0] if unbound.args else name
    schema: dict[str, Any]
    if issubclass(kind, SelectMultipleField):
        schema = {"type": "array", "uniqueItems": True,
                  "items": {"type": "string", "enum": _choices(unbound)}}
    elif issubclass(kind, TextAreaField):  # the networks: one CIDR prefix an item
        schema = {"type": "array", "items": {"type": "string"}, "minItems": 1}
    elif issubclass(kind, BooleanField):
        schema = {"type": "boolean"}
    elif issubclass(kind, IntegerField):
        schema = {"type": "integer"}
    elif issubclass(kind, (RadioField, SelectFieldBase)):
        values = _choices(unbound)
        schema = ({"type": "integer", "enum": [int(v) for v in values]} if _is_int(name)
                  else {"type": "string", "enum": values})
    elif issubclass(kind, (StringField, PasswordField)):
        schema = {"type": "string"}
    else:  # a field kind this mapping does not know yet: say so loudly, in the tests too
        raise TypeError(f"no JSON mapping for form field {name} ({kind.__name__})")
    for validator in unbound.kwargs.get("validators", ()):
        if isinstance(validator, NumberRange):
            schema.update({k: v for k, v in (("minimum", validator.min), ("maximum", validator.max))
                           if v is not None})
        if isinstance(validator, Length) and schema["type"] == "string":
            schema.update({k: v for k, v in (("minLength", validator.min), ("maxLength", validator.max))
                           if v is not None and v >= 0})
    if name in WRITE_ONLY:
        schema["writeOnly"] = True
    schema["title"] = str(label)
    return schema


def required_fields() -> list[str]:
    """Fields a new peer must be given: those the form requires and has no default for, and the key."""
    return [name for name, unbound in _unbound_fields()
            if unbound.kwargs.get("default") is None
            and any(isinstance(v, InputRequired) for v in unbound.kwargs.get("validators", ()))] + ["psk"]


def peer_schema(for_input: bool) -> dict:
    """The JSON Schema of a peer: what the API sends (`for_input=False`) or accepts."""
    properties = {name: field_schema(name, unbound) for name, unbound in _unbound_fields()}
    properties.update(READ_ONLY)
    if not for_input:
        for name in WRITE_ONLY:
            properties.pop(name, None)
    schema = {"type": "object", "additionalProperties": False, "properties": properties}
    if not for_input:
        schema["required"] = list(properties)
    return schema


def to_json(peer: Peer) -> dict:
    """What the API shows of a stored peer: every field but the key, and whether one is set."""
    record = peer.to_record()
    for name in WRITE_ONLY:
        record.pop(name, None)
    record["psk_set"] = bool(peer.psk)
    return record


# --- A JSON body -> the form -------------------------------------------------------------------

_JSON_TYPES = {"string": str, "boolean": bool, "array": list, "object": dict}


def shape_errors(body: Any) -> dict[str, list[str]]:
    """What is wrong with the body's shape: not an object, unknown fields, wrong JSON types."""
    if not isinstance(body, dict):
        return {"_body": ["The body must be a JSON object of peer fields."]}
    schema = peer_schema(for_input=True)["properties"]
    errors: dict[str, list[str]] = {}
    for key, value in body.items():
        field = schema.get(key)
        if field is None:
            errors[key] = [f"Unknown field; the fields are: {', '.join(schema)}."]
        elif not _has_type(value, field):
            errors[key] = [f"Must be {_describe(field)}."]
    return errors


def _has_type(value, field: dict) -> bool:
    if field["type"] == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if not isinstance(value, _JSON_TYPES[field["type"]]):
        return False
    return field["type"] != "array" or all(isinstance(v, str) for v in value)


def _describe(field: dict) -> str:
    return {"integer": "an integer", "string": "a string", "boolean": "true or false",
            "array": "a list of strings"}[field["type"]]


def form_data(record: dict) -> MultiDict:
    """The form data a browser would post for `record` (a peer's fields as JSON values)."""
    data = MultiDict()
    for name, unbound in _unbound_fields():
        value = record.get(name)
        if value is None:
            if issubclass(unbound.field_class, (StringField, PasswordField)) and not issubclass(
                    unbound.field_class, TextAreaField):
                data[name] = ""  # a browser posts an empty text field as "", never leaves it out
            continue
        if issubclass(unbound.field_class, SelectMultipleField):
            for item in value:
                data.add(name, item)
        elif issubclass(unbound.field_class, TextAreaField):
            data[name] = "\n".join(value)
        elif issubclass(unbound.field_class, BooleanField):
            if value:
                data[name] = "y"
        else:
            data[name] = str(value)
    return data


def new_peer_defaults(supported: frozenset[str] | None) -> dict:
    """What the empty peer form is pre-filled with, as JSON values: a new peer's defaults."""
    form = PeerForm(formdata=None, supported=supported, meta={"csrf": False})
    defaults = {}
    for name, _ in _unbound_fields():
        value = getattr(form, name).data
        if value is None or value == "":
            continue
        if _is_int(name) and isinstance(value, str):
            value = int(value)
        defaults[name] = list(value) if isinstance(value, (list, tuple)) else value
    return defaults


def peer_form(record: dict, editing: Peer | None, supported: frozenset[str] | None) -> PeerForm:
    """The peer form filled with `record`, ready for `validate_peer` (no CSRF: the API's caller
    proves itself with a bearer token, which a cross-site page cannot send)."""
    return PeerForm(formdata=form_data(record), editing=editing, supported=supported,
                    meta={"csrf": False})


def form_errors(form: PeerForm) -> dict[str, list[str]]:
    return {name: [str(m) for m in field.errors] for name, field in form._fields.items()
            if field.errors}
