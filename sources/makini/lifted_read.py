"""Pages whose fields drift in type, read column-wise all the same.

Arrow's JSON reader refuses a page on which one field holds a number in one
record and text in the next (``order_number`` 1042 and ``"PO-1042"``, a line's
``quantity`` 12 and ``"12.5"``), and such a page used to be parsed into Python
objects, which holds the GIL (``page_workers.py`` moved that to a second
process, at the cost of its memory). Here the page is read in two passes over
its text, neither of which builds the records:

- Arrow reads the fields that keep one type, given an explicit schema that
  leaves the drifting fields out (its reader skips fields a schema does not
  name, at any depth);
- msgspec lifts each drifting field's raw JSON text, which becomes a binary
  column beside Arrow's (Arrow's JSON reader never makes a binary column, so
  the converter knows those as lifted: ``records.py`` parses and types them as
  the row path does). It decodes the page into structs that forbid fields they
  do not name, so a field the schema would have skipped (one new on this page)
  is never lost: the page does not fit, and the plan is learned again from it.

The plan (which fields drift, the types of the others) is learned from a page
Arrow refused, and again from any page that does not fit it: a new field, a
field that starts to drift, a null field that gains a value. A page it cannot
plan for (a key field that drifts, free-form JSON inside child items) goes the
way it went before: parsed whole, in a page worker or here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from . import exact_json
from .settings import JSON_FIELDS

RAW_TYPE = pa.binary()  # a lifted field's column: the JSON text the API sent for it
_NULL = msgspec.Raw(b"null")  # a field a record does not have reads as JSON null, as in Arrow
_PAGING = (("next_cursor", pa.string()), ("total_count", pa.int64()))


class _Body(msgspec.Struct):
    data: list[dict[str, msgspec.Raw]]


_BODY = msgspec.json.Decoder(_Body)
_ITEMS = msgspec.json.Decoder(Optional[list[dict[str, msgspec.Raw]]])


@dataclass(frozen=True)
class LiftPlan:
    """How one list path's pages are read: Arrow's schema for the fields that keep
    their type, the fields lifted as raw text (per record, and per child item), and
    the msgspec decoder that lifts them and refuses a field the plan does not know."""

    schema: pa.Schema  # the body's: ``data`` as a list of the records' stable fields, then paging
    lifted: tuple[str, ...]
    items: Mapping[str, tuple[str, ...]]  # child field -> its items' lifted fields
    decoder: msgspec.json.Decoder


def learn(content: bytes, child_fields: frozenset, key_fields: frozenset,
          read_json: Callable[[bytes], pa.Table]) -> Optional[LiftPlan]:
    """A plan for pages like this one; None when the page is not one to read this way.
    ``read_json`` is the walk's own reading of a body (``client.PageSchemas``): it types
    the stable fields as any page's are typed."""
    try:
        records = _BODY.decode(content).data
        kinds, item_kinds = _kinds(records, child_fields)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, _NotAPlan):
        return None  # RecursionError: nesting deeper than msgspec goes (orjson's parse reports it)
    lifted = tuple(name for name, found in kinds.items() if name in JSON_FIELDS or _drifts(found))
    items = {field: tuple(name for name, found in named.items() if _drifts(found))
             for field, named in item_kinds.items()}
    items = {field: names for field, names in items.items() if names}
    if not (set(lifted) - JSON_FIELDS or items) or key_fields & set(lifted):
        return None  # nothing drifts that this would lift (Arrow refused it for another reason), or a key
    if any(JSON_FIELDS & set(named) for named in item_kinds.values()):
        return None  # free-form JSON inside items takes the row path (records._row_path_decides)
    try:
        stable = read_json(_without(records, set(lifted), items))
    except (pa.ArrowException, msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    record_type = _record_type(stable.schema)
    if record_type is None:
        return None
    try:
        return _plan(record_type, lifted, items, child_fields)
    except (ValueError, TypeError):
        return None  # a field name msgspec refuses (quotes, backslashes, control characters)


def read(content: bytes, plan: LiftPlan) -> Optional[pa.Table]:
    """The body as Arrow's reader gives it, its records holding the lifted fields as
    binary columns (JSON fields as their text); None when the page does not fit the plan."""
    try:
        body = pa_json.read_json(
            io.BytesIO(content), read_options=pa_json.ReadOptions(block_size=len(content) + 1),
            parse_options=pa_json.ParseOptions(explicit_schema=plan.schema, unexpected_field_behavior="ignore"))
        decoded = plan.decoder.decode(content).data
    except (pa.ArrowException, msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    if body.num_rows != 1:
        return None
    data = body["data"].combine_chunks()
    if data.null_count or not pa.types.is_list(data.type):
        return None
    records = pc.list_flatten(data)
    if len(records) != len(decoded) or records.null_count:
        return None
    if records.type != plan.schema.field("data").type.value_type:
        return None
    names = [field.name for field in records.type]
    arrays = records.flatten()
    for index, name in enumerate(names):
        lifted_items = plan.items.get(name)
        if lifted_items:
            owned = [getattr(record, f"stable{index}") or () for record in decoded]
            arrays[index] = _with_lifted_items(arrays[index], owned, lifted_items)
            if arrays[index] is None:
                return None
    for position, name in enumerate(plan.lifted):
        lifted = _raw_array([getattr(record, f"lifted{position}") for record in decoded])
        if lifted is None:
            return None
        names.append(name)
        try:
            arrays.append(_json_text(lifted) if name in JSON_FIELDS else lifted)
        except (ValueError, RecursionError):  # a value the whole parse refuses too, and reports
            return None
    rows = pa.StructArray.from_arrays(arrays, names=names)
    return pa.table({"data": pa.ListArray.from_arrays(pa.array([0, len(rows)], pa.int32()), rows),
                     **{name: body[name] for name, _ in _PAGING}})


def raw_values(values: pa.Array | pa.ChunkedArray) -> list:
    """A lifted column's values, parsed exactly (``exact_json``); null for a null or absent field."""
    texts = values.to_pylist()
    return exact_json.loads(b"[" + b",".join(b"null" if text is None else text for text in texts) + b"]")


def is_raw(kind: pa.DataType) -> bool:
    return kind == RAW_TYPE


class _NotAPlan(Exception):
    """The page is not one to read this way (a child field that is not an array of objects)."""


def _kinds(records: list[dict], child_fields: frozenset) -> tuple[dict[str, set], dict[str, dict[str, set]]]:
    kinds: dict[str, set] = {}
    item_kinds: dict[str, dict[str, set]] = {}
    for record in records:
        for name, raw in record.items():
            if name in child_fields:
                try:
                    items = _ITEMS.decode(raw)
                except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                    raise _NotAPlan(name) from None
                named = item_kinds.setdefault(name, {})
                for item in items or ():
                    for key, value in item.items():
                        named.setdefault(key, set()).add(_kind(value))
            else:
                kinds.setdefault(name, set()).add(_kind(raw))
    return kinds, item_kinds


_KIND_OF_FIRST_BYTE = {ord("{"): "object", ord("["): "array", ord('"'): "text", ord("t"): "flag",
                       ord("f"): "flag", ord("n"): "null"}


def _kind(raw: msgspec.Raw) -> str:
    text = bytes(raw)
    kind = _KIND_OF_FIRST_BYTE.get(text[0], "number")
    if kind == "object" and b"[" in text:
        return "object with arrays"  # Arrow types arrays inside objects together: lifted, kept as sent
    if kind == "number" and len(text) >= exact_json.LONG_DIGITS and exact_json.has_long_integer(text):
        return "long integer"  # beyond 64 bits: lifted, kept exact
    return kind


def _drifts(found: set) -> bool:
    kinds = found - {"null"}
    return len(kinds) > 1 or bool(kinds & {"array", "object with arrays", "long integer"})


def _without(records: list[dict], lifted: set, items: Mapping[str, tuple[str, ...]]) -> bytes:
    """The page's body without the lifted fields, for Arrow to type what is left."""
    kept: list[dict] = []
    for record in records:
        row = {name: raw for name, raw in record.items() if name not in lifted}
        for field, names in items.items():
            if field in row:
                inner = _ITEMS.decode(row[field])
                if inner is not None:
                    row[field] = [{k: v for k, v in item.items() if k not in names} for item in inner]
        kept.append(row)
    return msgspec.json.encode({"data": kept})


def _record_type(schema: pa.Schema) -> Optional[pa.StructType]:
    if schema.get_field_index("data") < 0:
        return None
    data = schema.field("data").type
    if not pa.types.is_list(data) or not pa.types.is_struct(data.value_type):
        return None
    return data.value_type


def _plan(record_type: pa.StructType, lifted: tuple[str, ...], items: Mapping[str, tuple[str, ...]],
          child_fields: frozenset) -> Optional[LiftPlan]:
    if any(record_type.get_field_index(field) < 0 or not _objects_in_list(record_type.field(field).type)
           for field in items):
        return None  # items with lifted fields that Arrow did not type as objects
    record = _strict_struct(record_type, lifted, {field: items.get(field, ()) for field in child_fields})
    body = msgspec.defstruct("LiftedBody", [("data", list[record])])  # type: ignore[valid-type]
    schema = pa.schema([pa.field("data", pa.list_(record_type)), *_PAGING])
    return LiftPlan(schema, lifted, dict(items), msgspec.json.Decoder(body))


def _strict_struct(kind: pa.StructType, lifted: Iterable[str],
                   children: Mapping[str, tuple[str, ...]] = {}) -> type:
    """A msgspec struct of an object's fields that refuses any other, nested objects and the
    items of ``children`` (child field -> its items' lifted fields) alike; the stable fields
    as ``stable<index>`` (their index in ``kind``), the lifted ones as ``lifted<position>``."""
    fields: list[tuple[str, Any, Any]] = []
    renames: dict[str, str] = {}
    for index, field in enumerate(kind):
        inner: Any = msgspec.Raw
        default: Any = _NULL
        if field.name in children and _objects_in_list(field.type):
            inner, default = Optional[list[_strict_struct(field.type.value_type, children[field.name])]], None  # type: ignore[misc]
        elif pa.types.is_struct(field.type):
            inner, default = Optional[_strict_struct(field.type, ())], None
        fields.append((f"stable{index}", inner, default))
        renames[f"stable{index}"] = field.name
    for position, name in enumerate(lifted):
        fields.append((f"lifted{position}", msgspec.Raw, _NULL))
        renames[f"lifted{position}"] = name
    return msgspec.defstruct("LiftedObject", fields, rename=renames, forbid_unknown_fields=True)


def _objects_in_list(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) and pa.types.is_struct(kind.value_type)


def _with_lifted_items(items: pa.Array, owned: list, names: tuple[str, ...]) -> Optional[pa.Array]:
    """The child arrays with their items' lifted fields added as binary fields."""
    flat = pc.list_flatten(items)
    every = [item for group in owned for item in group]
    if len(every) != len(flat) or flat.null_count or items.offset:
        return None
    arrays = flat.flatten()
    fields = [field.name for field in flat.type]
    for position, name in enumerate(names):
        lifted = _raw_array([getattr(item, f"lifted{position}") for item in every])
        if lifted is None:
            return None
        arrays.append(lifted)
        fields.append(name)
    objects = pa.StructArray.from_arrays(arrays, names=fields)
    offsets = pc.subtract(items.offsets, items.offsets[0]) if len(items.offsets) else items.offsets
    return pa.ListArray.from_arrays(offsets, objects, mask=items.is_null())


def _raw_array(raws: list) -> Optional[pa.Array]:
    """The raw texts as a binary column; None when one is not UTF-8 (msgspec does not check the
    bytes of a raw value, and a page the whole parse would refuse must not be spooled)."""
    array = pa.array([None if (text := bytes(raw)) == b"null" else text for raw in raws], RAW_TYPE)
    try:
        array.cast(pa.string())  # checks the UTF-8 in C++
    except pa.ArrowInvalid:
        return None
    return array


def _json_text(lifted: pa.Array) -> pa.Array:
    """Free-form JSON fields as the text every path stores (``PageConverter._validate``):
    text as it is, anything else printed by ``records.json_text``'s rules."""
    return pa.array([value if value is None or isinstance(value, str) else exact_json.dumps(value).decode()
                     for value in raw_values(lifted)], pa.string())
