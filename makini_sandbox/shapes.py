"""Deployment shapes: how one connection's customised system bends the unified model.

Real Makini connections map hundreds of differently customised systems onto
the unified model (docs/makini-api.md: "a field's JSON type is not fixed by
this contract", "a deployment may call the key and timestamp fields
differently", custom list endpoints). A *shape* is chosen per connection
(`Sandbox(shapes=[...])`, one spec per connection or one for all) and applied
to every record the connection serves: the generators (data.py) still make
canonical records, and the shape turns each one into what that deployment
sends. `default` applies nothing, so an unshaped sandbox serves exactly the
bytes it always did.

A spec is a trait or preset name, or several joined with `+`
(`"v3+type_drift+custom_entity"`). Traits:

| trait | what the connection sends |
| --- | --- |
| `timestamps` | every date-ish field (`order_date`, `required_date`, `delivery_date`, line `delivery_date`, `scheduled_start`, `scheduled_end`, `next_due_date`) as a full timestamp, `2024-02-28T15:31:43.949Z` |
| `mixed_dates` | each of those fields, per record, either a date `2024-02-28` or a full timestamp: both within one walk |
| `type_drift` | numbers as strings and strings as numbers (`priority` 2 / `"P2"` / `"high"`, line `quantity` `"12.5"`, `unit_price` and `total_amount` as numbers, `order_number` and `vendor_number` as integers, `reorder_point` `"15"`); integers turning into floats mid-walk (line `quantity`, `quantity_on_hand`: integers in the older half of the walk, `x.5` / `x.25` in the newer half); objects and bools where there was text (vendor `payment_terms` `{"code", "days"}`, asset `location` `{"site", "area"}`, work order `description` `{"text", "lang"}` or `false`, vendor `email` `false`); custom field values as strings; integers beyond 64 bits (`erp_doc_id` on purchase orders, `external_ref` in custom fields) |
| `sparse` | fields appearing mid-walk (absent from records in the older half, present in the newer: vendor `tax_id`, work order `completed_at`, PO `incoterms` and line `discount_pct`, asset `warranty_until`, inventory `lot_number`, plan `owner`) and vanishing (present in the older half only: vendor `fax`, work order `crew`, asset `manufacturer`, inventory `bin`) |
| `nulls` | nulls inside `custom_fields` (also a nested object with nulls and a nested list of objects), custom field values turned null, `ship_to: null`, `ship_to` with a null `city`, PO `bill_to` turning from an object into a list of addresses in the newer half, vendor `contact` object (with nulls) turning into a list, null line `description`, null `country`, null plan `frequency` |
| `custom_nulls` | every record's `custom_fields` padded or trimmed to 3-6 keys (the connection's own first, then `erp_status`, `cost_object`, `sync_batch`, `reviewed`, ...), one to half of them null; each key keeps one type, and nothing outside `custom_fields` changes |
| `unicode` | 10,240-character strings of arbitrary Unicode (emoji and ZWJ sequences, flags, CJK, Hangul, combining marks, Hebrew and Arabic, bidi overrides, quotes, backslashes, `\\n \\t \\r`, `\\u0000`, U+2028/2029, BOM, ...) in descriptions, names and `custom_fields.notes`; short such strings elsewhere |
| `v3` | the older v3 API's field names: `key` for `id`, `updatedAt` for `updated_at`, `deletedAt` for `deleted_at`, `lineItems` for `line_items`, `orderNo` for `order_number` (`created_at` stays). Ordering, cursors and `modified_after` use `updatedAt` |
| `int64` | with `type_drift`: the integers that would pass 64 bits stay within them (`erp_doc_id` near 10^18, `external_ref` near 2^62), drawn from the same random numbers; the one `drift` a 64-bit JSON reader such as dlt's `rest_api` can sync (`benchmarks/sync_benchmark.py` compares on it) |
| `custom_entity` | a customer-defined list endpoint `/api/v1/maintenance-plans` (nested `tasks` list of objects with `task_number`, `frequency` object, ...); connections without it answer 404 `NOT_FOUND` there |

Presets: `default` (nothing), `drift` (`mixed_dates+type_drift+sparse+nulls`),
`drift_int64` (`drift+int64`),
`chaos` (every trait but `v3`, `timestamps`, `int64` and `custom_nulls`), `v3_chaos` (`chaos+v3`).

"Older/newer half" means a record's `updated_at` before or after the middle
of the initial data's year (`anchor - 182.5 days`); records changed by
`mutate` are always newer. Every other choice is drawn from a generator seeded
by (sandbox seed, connection index, entity, record id, updated_at), so the
same seed gives the same bytes, and a new version of a record (mutate) draws
afresh but keeps the connection's shape (a mutated v3 record still has `key`
and `updatedAt`).
"""
from __future__ import annotations

import random
from typing import Callable, NamedTuple

import orjson

from .clock import DAY_MS, parse_iso_ms
from .data import derive_seed

TRAITS = ("timestamps", "mixed_dates", "type_drift", "sparse", "nulls", "unicode", "v3", "custom_entity", "int64",
          "custom_nulls")
PRESETS: dict[str, tuple[str, ...]] = {
    "default": (),
    "drift": ("mixed_dates", "type_drift", "sparse", "nulls"),
    "drift_int64": ("mixed_dates", "type_drift", "sparse", "nulls", "int64"),
    "chaos": ("mixed_dates", "type_drift", "sparse", "nulls", "unicode", "custom_entity"),
    "v3_chaos": ("mixed_dates", "type_drift", "sparse", "nulls", "unicode", "custom_entity", "v3"),
}
CUSTOM_ENTITIES = ("maintenance-plans",)

_YEAR_MS = 365 * DAY_MS
_DATE_FIELDS = {
    "purchase-orders": ("order_date", "required_date", "delivery_date"),
    "work-orders": ("scheduled_start", "scheduled_end"),
    "maintenance-plans": ("next_due_date",),
}
_V3_RENAMES = {"id": "key", "updated_at": "updatedAt", "deleted_at": "deletedAt",
               "line_items": "lineItems", "order_number": "orderNo"}

LONG_TEXT_CHARS = 10_240
# Fragments of hostile text. Every one is valid Unicode (no lone surrogates), so valid JSON.
UNICODE_FRAGMENTS = (
    "😀", "👩‍👩‍👧‍👦", "🇩🇪🇯🇵", "🧑🏽‍🔧", "漢字かな交じり文", "日本語テキスト", "中文字符", "한국어 텍스트",
    "e\u0301", "a\u0308\u0323", "Z\u0351\u0352\u0353\u0354", "שלום עולם", "مرحبا بالعالم",
    "\u202eRTL override\u202c", "\u200f\u200e", '"double quotes"', "'single'", "back\\slash\\",
    "\\u0041 is no escape", "\\n", "\n", "\t", "\r\n", "\u0000", "\u2028", "\u2029", "\ufeff",
    "\u00a0", "\u200b", "Ω≈ç√∫˜µ≤≥÷", "𝕳𝖊𝖑𝖑𝖔", "\U0010fffd", "\x7f", "\x1b[31m", "<script>alert(1)</script>",
    "' OR 1=1 --", "NULL", "null", "  padded  ", "ﷺ", "Ǆǅǆ", "ß→SS", "İı", "0.1e-7", "-0",
)
_NAMES = ("jdoe", "a.schmidt", "m.tanaka", "l.garcia", "p.okafor")


class FieldNames(NamedTuple):
    """What a deployment calls the key and timestamp fields (and the line items)."""
    id: str = "id"
    updated_at: str = "updated_at"
    deleted_at: str = "deleted_at"
    line_items: str = "line_items"


CANONICAL_NAMES = FieldNames()
V3_NAMES = FieldNames("key", "updatedAt", "deletedAt", "lineItems")


class Shape(NamedTuple):
    name: str                  # the spec as given, e.g. "v3+type_drift"
    traits: frozenset[str]

    @property
    def names(self) -> FieldNames:
        return V3_NAMES if "v3" in self.traits else CANONICAL_NAMES

    @property
    def custom_entities(self) -> tuple[str, ...]:
        return CUSTOM_ENTITIES if "custom_entity" in self.traits else ()

    @property
    def renders(self) -> bool:
        """Whether records change on their way out (custom_entity alone changes none)."""
        return bool(self.traits - {"custom_entity", "int64"})

    @property
    def is_default(self) -> bool:
        return not self.traits


def parse_shape(spec: str) -> Shape:
    """`"v3+type_drift"` -> Shape; ValueError naming the known traits and presets."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"a shape is a non-empty string, got {spec!r}")
    traits: set[str] = set()
    for part in spec.split("+"):
        part = part.strip()
        if part in PRESETS:
            traits.update(PRESETS[part])
        elif part in TRAITS:
            traits.add(part)
        else:
            raise ValueError(f"unknown shape {part!r}; traits: {list(TRAITS)}, presets: {list(PRESETS)}")
    return Shape(spec.strip(), frozenset(traits))


def resolve_shapes(shapes: str | list[str] | tuple[str, ...] | None, connections: int) -> list[Shape]:
    """None -> every connection default; one name -> that shape for all; a list -> one per connection."""
    if shapes is None:
        return [parse_shape("default")] * connections
    if isinstance(shapes, str):
        return [parse_shape(shapes)] * connections
    shapes = list(shapes)
    if len(shapes) != connections:
        raise ValueError(f"shapes gives {len(shapes)} shape(s) for {connections} connection(s); give one per "
                         "connection or a single name for all")
    return [parse_shape(s) for s in shapes]


def long_text(rng: random.Random, n: int = LONG_TEXT_CHARS) -> str:
    """Exactly `n` characters of hostile Unicode (always holding NUL, an emoji, CJK and RTL text)."""
    frags, r = UNICODE_FRAGMENTS, rng.random
    parts = ["\u0000", "😀", "漢字", "שלום", '"\\', "\n\t"]
    size = sum(map(len, parts))
    while size < n:
        f = frags[int(r() * len(frags))] if r() < 0.7 else f" word{int(r() * 1000)}"
        parts.append(f)
        size += len(f)
    rng.shuffle(parts)
    return "".join(parts)[:n]


class LongTexts:
    """A pool of `long_text`s drawn once per connection; `pick` serves one rotated by a
    random offset (cheap, still exactly LONG_TEXT_CHARS characters holding every
    character of the original)."""

    def __init__(self, rng: random.Random, size: int = 16) -> None:
        self._pool = [long_text(rng) for _ in range(size)]

    def pick(self, rng: random.Random) -> str:
        text = self._pool[int(rng.random() * len(self._pool))]
        k = int(rng.random() * len(text))
        return text[k:] + text[:k]


def short_text(rng: random.Random, base: str) -> str:
    r = rng.random
    return base + " " + "".join(UNICODE_FRAGMENTS[int(r() * len(UNICODE_FRAGMENTS))] for _ in range(1 + int(r() * 3)))


class ShapeRenderer:
    """Turns one connection's canonical records into what its deployment sends."""

    def __init__(self, shape: Shape, seed: int, index: int, anchor_ms: int) -> None:
        self.shape = shape
        self.seed, self.index = seed, index
        self.cutoff_ms = anchor_ms - _YEAR_MS // 2
        t = shape.traits
        self.long_texts = LongTexts(random.Random(derive_seed(seed, index, "shape-long-texts"))) \
            if "unicode" in t else None
        # In order: values first (they look at canonical names), renames last.
        self._steps: list[Callable] = [step for name, step in (
            ("timestamps", _timestamps), ("mixed_dates", _mixed_dates), ("type_drift", _type_drift),
            ("sparse", _sparse), ("nulls", _nulls), ("custom_nulls", _custom_nulls), ("unicode", _unicode),
            ("v3", _v3)) if name in t]

    def __call__(self, entity: str, record: dict) -> dict:
        rec = orjson.loads(orjson.dumps(record))  # a deep copy: the canonical record stays as it was
        rng = random.Random(derive_seed(self.seed, self.index, entity, "shape", record["id"], record["updated_at"]))
        late = parse_iso_ms(record["updated_at"]) >= self.cutoff_ms
        for step in self._steps:
            rec = step(self, entity, rec, rng, late)
        return rec


# -- traits: each takes (renderer, entity, record, rng, late) and returns the record ----
def _as_timestamp(value, rng: random.Random):
    if not isinstance(value, str) or len(value) != 10:
        return value
    ms = int(rng.random() * DAY_MS)
    sec, milli = divmod(ms, 1000)
    h, sec = divmod(sec, 3600)
    m, sec = divmod(sec, 60)
    return f"{value}T{h:02d}:{m:02d}:{sec:02d}.{milli:03d}Z"


def _dates(entity: str, rec: dict, rng: random.Random, p: float) -> dict:
    r = rng.random
    for f in _DATE_FIELDS.get(entity, ()):
        if f in rec and r() < p:
            rec[f] = _as_timestamp(rec[f], rng)
    for ln in rec.get("line_items") or ():
        if "delivery_date" in ln and r() < p:
            ln["delivery_date"] = _as_timestamp(ln["delivery_date"], rng)
    return rec


def _timestamps(sr, entity, rec, rng, late):
    return _dates(entity, rec, rng, 1.0)


def _mixed_dates(sr, entity, rec, rng, late):
    return _dates(entity, rec, rng, 0.5)


_PRIORITY_RANK = {"low": 4, "medium": 3, "high": 2, "urgent": 1}


def _type_drift(sr, entity, rec, rng, late):
    r = rng.random
    if entity == "work-orders":
        rank = _PRIORITY_RANK.get(rec.get("priority"), 3)
        x = r()
        rec["priority"] = rank if x < 0.35 else f"P{rank}" if x < 0.6 else rec.get("priority")
        x = r()
        if x < 0.1:
            rec["description"] = {"text": rec.get("description"), "lang": "en"}
        elif x < 0.15:
            rec["description"] = False
    elif entity == "purchase-orders":
        if r() < 0.3:
            rec["total_amount"] = float(rec["total_amount"])
        if r() < 0.2:
            rec["order_number"] = int(rec["order_number"].split("-")[-1])
        # a document number: 64-bit mostly, beyond 64 bits now and then (SAP's 20+ digit ids)
        beyond = 10 ** 18 if "int64" in sr.shape.traits else 10 ** 19 * 2
        rec["erp_doc_id"] = beyond + int(r() * 10 ** 9) if r() < 0.15 else int(r() * 10 ** 12)
        for ln in rec.get("line_items") or ():
            q = ln["quantity"]
            if late and isinstance(q, int):
                q = q + 0.5
            if r() < 0.15:
                q = str(q)
            ln["quantity"] = q
            if r() < 0.2:
                ln["unit_price"] = float(ln["unit_price"])
    elif entity == "inventory-items":
        q = rec["quantity_on_hand"]
        rec["quantity_on_hand"] = str(q) if r() < 0.1 else q + 0.25 if late else q
        if r() < 0.15:
            rec["reorder_point"] = str(rec["reorder_point"])
    elif entity == "vendors":
        if r() < 0.25:
            terms = rec["payment_terms"]
            days = int("".join(ch for ch in terms.split()[-1] if ch.isdigit()) or 0) or None
            rec["payment_terms"] = {"code": terms, "days": days}
        if r() < 0.2:
            rec["vendor_number"] = int(rec["vendor_number"][1:])
        if r() < 0.05:
            rec["email"] = False
    elif entity == "assets":
        if r() < 0.2:
            rec["serial_number"] = int(rec["serial_number"][2:], 16)
        if r() < 0.2:
            site, _, area = rec["location"].partition("/")
            rec["location"] = {"site": site, "area": area or None}
    elif entity == "maintenance-plans":
        if late and r() < 0.5:
            rec["estimated_hours"] = str(rec["estimated_hours"])
        freq = rec.get("frequency")
        if isinstance(freq, dict) and r() < 0.2:
            freq["interval"] = str(freq["interval"])
    cf = rec.get("custom_fields")
    if isinstance(cf, dict):
        for k, v in list(cf.items()):
            if isinstance(v, (int, float)) and not isinstance(v, bool) and r() < 0.2:
                cf[k] = str(v)
            elif isinstance(v, bool) and r() < 0.2:
                cf[k] = "yes" if v else "no"
        if r() < 0.1:
            cf["external_ref"] = (2 ** 62 if "int64" in sr.shape.traits else 2 ** 64) + int(r() * 10 ** 6)
    return rec


def _sparse(sr, entity, rec, rng, late):
    r = rng.random
    appears, vanishes = {
        "vendors": ("tax_id", "fax"), "work-orders": ("completed_at", "crew"),
        "purchase-orders": ("incoterms", None), "assets": ("warranty_until", "manufacturer"),
        "inventory-items": ("lot_number", "bin"), "maintenance-plans": ("owner", None),
    }.get(entity, (None, None))
    values = {
        "tax_id": lambda: f"TX{int(r() * 10 ** 9):09d}", "fax": lambda: f"+1-555-{int(r() * 10 ** 4):04d}",
        "completed_at": lambda: None if r() < 0.3 else _as_timestamp(rec.get("scheduled_end", "2024-01-01"), rng),
        "crew": lambda: ("A", "B", "C", "night")[int(r() * 4)],
        "incoterms": lambda: ("FOB", "CIF", "EXW", "DDP")[int(r() * 4)],
        "warranty_until": lambda: f"{2026 + int(r() * 5)}-{1 + int(r() * 12):02d}-{1 + int(r() * 28):02d}",
        "manufacturer": lambda: ("Siemens", "ABB", "Grundfos", "Flowserve")[int(r() * 4)],
        "lot_number": lambda: f"LOT-{int(r() * 10 ** 6):06d}", "bin": lambda: f"B{int(r() * 99):02d}",
        "owner": lambda: _NAMES[int(r() * len(_NAMES))],
    }
    if appears and late:
        rec[appears] = values[appears]()
    if vanishes and not late:
        rec[vanishes] = values[vanishes]()
    if entity == "purchase-orders" and late:
        for ln in rec.get("line_items") or ():
            ln["discount_pct"] = round(r() * 15, 2)
    return rec


def _nulls(sr, entity, rec, rng, late):
    r = rng.random
    cf = rec.get("custom_fields")
    if isinstance(cf, dict):
        for k in list(cf):
            if r() < 0.2:
                cf[k] = None
        cf["legacy_code"] = None if r() < 0.5 else f"L{int(r() * 1000):03d}"
        cf["approval"] = {"by": None if r() < 0.4 else _NAMES[int(r() * len(_NAMES))],
                          "level": 1 + int(r() * 3), "comment": None}
        cf["history"] = [{"step": i + 1, "by": _NAMES[int(r() * len(_NAMES))],
                          "at": None if r() < 0.3 else rec["updated_at"], "notes": None,
                          "tags": [] if r() < 0.5 else ["auto", None]}
                         for i in range(int(r() * 4))]
    if entity == "purchase-orders":
        x = r()
        if x < 0.1:
            rec["ship_to"] = None
        elif x < 0.25 and isinstance(rec.get("ship_to"), dict):
            rec["ship_to"]["city"] = None
        if late and r() < 0.3 and isinstance(rec.get("bill_to"), dict):
            other = dict(rec["bill_to"], line1="PO Box " + str(100 + int(r() * 900)), postal_code=None)
            rec["bill_to"] = [rec["bill_to"], other]
        for ln in rec.get("line_items") or ():
            if r() < 0.1:
                ln["description"] = None
    elif entity == "vendors":
        if r() < 0.1:
            rec["country"] = None
        contact = {"name": _NAMES[int(r() * len(_NAMES))], "phone": None if r() < 0.5 else "+1-555-0100",
                   "email": None}
        rec["contact"] = [contact, dict(contact, name=_NAMES[0])] if late and r() < 0.4 else contact
    elif entity == "work-orders":
        if r() < 0.05:
            rec["description"] = None
    elif entity == "maintenance-plans":
        if r() < 0.1:
            rec["frequency"] = None
    return rec


# Custom fields a deployment adds, each of one type, in the order they are added.
_MORE_CUSTOM_FIELDS = (
    ("erp_status", lambda r: ("open", "held", "closed")[int(r() * 3)]),
    ("cost_object", lambda r: f"CO-{int(r() * 10 ** 5):05d}"),
    ("sync_batch", lambda r: int(r() * 10 ** 6)),
    ("reviewed", lambda r: r() < 0.5),
    ("approver", lambda r: _NAMES[int(r() * len(_NAMES))]),
    ("source_system", lambda r: ("SAP", "Maximo", "IFS")[int(r() * 3)]),
)


def _custom_nulls(sr, entity, rec, rng, late):
    """3-6 custom fields, one to half of them null: the common real-world case of
    a customised system that leaves some of its own fields empty."""
    cf = rec.get("custom_fields")
    if not isinstance(cf, dict):
        return rec
    r = rng.random
    size = 3 + int(r() * 4)
    keys = list(cf)[:size]
    cf = {k: cf[k] for k in keys}
    for name, make in _MORE_CUSTOM_FIELDS:
        if len(cf) >= size:
            break
        if name not in cf:
            cf[name] = make(r)
    for name in rng.sample(list(cf), 1 + int(r() * (len(cf) // 2))):
        cf[name] = None
    rec["custom_fields"] = cf
    return rec


def _unicode(sr, entity, rec, rng, late):
    r = rng.random
    field = {"work-orders": "description", "inventory-items": "description", "vendors": "name",
             "assets": "name", "maintenance-plans": "name", "purchase-orders": "payment_terms"}[entity]
    x = r()
    if x < 0.15:
        rec[field] = sr.long_texts.pick(rng)
    elif x < 0.5 and isinstance(rec.get(field), str):
        rec[field] = short_text(rng, rec[field])
    if entity == "purchase-orders":
        for ln in rec.get("line_items") or ():
            if r() < 0.1:
                ln["description"] = sr.long_texts.pick(rng)
    if entity == "maintenance-plans":
        for task in rec.get("tasks") or ():
            if r() < 0.2:
                task["description"] = short_text(rng, str(task.get("description")))
    cf = rec.get("custom_fields")
    if isinstance(cf, dict) and r() < 0.1:
        cf["notes"] = sr.long_texts.pick(rng)
    return rec


def _v3(sr, entity, rec, rng, late):
    return {_V3_RENAMES.get(k, k): v for k, v in rec.items()}
