"""Where a value of any JSON type lands: its column, or a variant column beside it.

The contract fixes no field's JSON type: one connection sends a date where
another sends a timestamp, a number turns into ``"P2"``, an integer into a
float. Every value must land as sent, so each column has a *kind* (dlt's data
type names: ``text``, ``bigint``, ``double``, ``bool``, ``timestamp``,
``date``, ``decimal``), taken from the destination's schema, else from the
entity's declared hint, else from the first value seen. A value of that kind,
or one that converts to it without loss (an integer to a double below 2**53,
an integral double to a bigint, an ISO date string to a date, an ISO timestamp
with a zone to a timestamp), lands in the column. Any other value lands in the
variant column named after its own kind, dlt's convention: ``priority__v_text``.
Nothing is rounded, truncated or reformatted to fit, and no page is refused.

``ColumnKinds`` holds the kinds of one entity's tables for a run, shared by the
entity's connections, and lists each change it saw (a new column or a new
variant) as a ``SchemaChange``, which the walk records in
``_makini_schema_changes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Optional


import pyarrow as pa
import pyarrow.compute as pc


TIMESTAMP = pa.timestamp("us", tz="UTC")
KIND_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "bigint": pa.int64(),
    "double": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": TIMESTAMP,
    "date": pa.date32(),
    "decimal": pa.decimal128(38, 0),  # integers beyond 64 bits
    "binary": pa.binary(),  # text a destination cannot hold as text (U+0000 in PostgreSQL), as UTF-8
}
VARIANT_SEPARATOR = "__v_"
SCHEMA_CHANGES_TABLE = "_makini_schema_changes"

ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
ISO_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})$"
EXACT_DOUBLE_INTEGERS = 2**53  # beyond this an integer is not always a double exactly
# What Arrow raises when values do not fit a type or cannot be read together; the
# code that catches them falls back to a slower, exact path.
ARROW_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, pa.ArrowIndexError, OverflowError)


def kind_of(arrow_type: pa.DataType) -> Optional[str]:
    """The kind of an Arrow type; None for the null type (no value to learn from)."""
    if pa.types.is_null(arrow_type):
        return None
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "text"
    if pa.types.is_boolean(arrow_type):
        return "bool"
    if pa.types.is_integer(arrow_type):
        return "bigint"
    if pa.types.is_floating(arrow_type):
        return "double"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_decimal(arrow_type):
        return "decimal"
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return "binary"
    return "text"


def variant_name(column: str, kind: str) -> str:
    return f"{column}{VARIANT_SEPARATOR}{kind}"


@dataclass(frozen=True)
class SchemaChange:
    """One change of a table's shape, as ``_makini_schema_changes`` records it."""

    connection_id: str
    table_name: str
    column_name: str
    change: str  # "new column" or "new variant of <column> (<kind> where it holds <kind>)"
    kind: str
    first_seen: datetime
    request_id: Optional[str]

    def row(self) -> dict:
        return {
            "connection_id": self.connection_id, "table_name": self.table_name,
            "column_name": self.column_name, "change": self.change, "kind": self.kind,
            "first_seen": self.first_seen, "request_id": self.request_id,
        }


SCHEMA_CHANGE_KEY = ("connection_id", "table_name", "column_name")


@dataclass
class ColumnKinds:
    """The kind of every column of some tables, learned and reported as pages land."""

    kinds: dict[str, dict[str, str]] = field(default_factory=dict)  # table -> column -> kind
    changes: list[SchemaChange] = field(default_factory=list)
    version: int = 0  # bumped on every kind learned (conversion plans are kept per version)
    text_without_nul: bool = False  # the destination's text cannot hold U+0000 (PostgreSQL)

    @classmethod
    def from_schema(cls, schema_tables: Mapping[str, Mapping], tables: Iterable[str],
                    stored: Optional[Mapping[str, Mapping[str, str]]] = None,
                    text_without_nul: bool = False) -> "ColumnKinds":
        """Seeded from a dlt schema's tables (``schema.tables``), then from ``stored``
        (table -> column -> type, asked of the destination) for columns the schema
        lacks: another pipeline sharing the tables may have made them."""
        kinds = {}
        for table in tables:
            columns = (schema_tables.get(table) or {}).get("columns") or {}
            own = {name: column["data_type"] for name, column in columns.items() if column.get("data_type")}
            merged = {**(stored or {}).get(table, {}), **own}
            kinds[table] = {name: kind for name, kind in merged.items() if not name.startswith("_dlt")}
        return cls(kinds, text_without_nul=text_without_nul)

    def kind(self, table: str, column: str) -> Optional[str]:
        return self.kinds.get(table, {}).get(column)

    def learn(self, table: str, column: str, kind: str, origin: "Origin", change: Optional[str]) -> None:
        self.kinds.setdefault(table, {})[column] = kind
        self.version += 1
        if change is not None:
            self.changes.append(SchemaChange(
                origin.connection_id, table, column, change, kind, datetime.now(timezone.utc), origin.request_id))

    def take_changes(self) -> list[SchemaChange]:
        changes, self.changes = self.changes, []
        return changes

    def known(self, table: str) -> bool:
        """Whether the table has columns yet (a new column of a known table is a change)."""
        return bool(self.kinds.get(table))

    def land(self, table: str, column: str, parts: list[pa.Array], declared: Optional[str],
             origin: "Origin", known_table: bool = True) -> list[tuple[str, pa.Array]]:
        """The columns ``parts`` (the values of one field, each part one Arrow type,
        null where another part holds the value) land in: the field's own column
        and any variant columns. ``known_table``: the table had columns before
        this page, so a new column is reported."""
        target = self.kind(table, column)
        if target is None:
            target = _first_kind(parts, declared)
            if target is None and declared in KIND_TYPES:
                # no value yet, but the column is declared (deleted_at, null while a record lives):
                # it exists from the first page, so its first value later is no schema change
                self.learn(table, column, declared, origin, None)
                return [(column, pa.nulls(len(parts[0]), KIND_TYPES[declared]))]
            if target is None:  # no value yet: its kind comes with the first one
                return [(column, pa.nulls(len(parts[0]), pa.null()))]
            self.learn(table, column, target, origin, "new column" if known_table else None)
        main: Optional[pa.Array] = None
        rests: dict[str, pa.Array] = {}
        if self.text_without_nul:
            parts = [q for p in parts for q in _nul_apart(p)]
        for part in parts:
            fits, rest = fit(part, target)
            main = fits if main is None else pc.coalesce(main, fits)
            for kind, values in _rest_kinds(rest, target):
                rests[kind] = values if kind not in rests else pc.coalesce(rests[kind], values)
        out = [(column, main)] if main is not None else []
        for kind, values in rests.items():
            name = variant_name(column, kind)
            if self.kind(table, name) is None:
                self.learn(table, name, kind, origin, f"new variant of {column} ({kind} where it holds {target})")
            out.append((name, values))
        return out


@dataclass(frozen=True)
class Origin:
    """Where values came from, for the schema-change record."""

    connection_id: str
    request_id: Optional[str] = None


def _nul_apart(values: pa.Array) -> list[pa.Array]:
    """Text holding U+0000 apart from the rest, as UTF-8 bytes (it lands in a binary variant)."""
    if kind_of(values.type) != "text" or values.null_count == len(values):
        return [values]
    has_nul = pc.fill_null(pc.match_substring(values, "\x00"), False)
    if not pc.any(has_nul).as_py():
        return [values]
    text = pc.if_else(has_nul, pa.scalar(None, values.type), values)
    raw = pc.if_else(has_nul, values, pa.scalar(None, values.type)).cast(pa.binary())
    return [text, raw]


def _first_kind(parts: list[pa.Array], declared: Optional[str]) -> Optional[str]:
    """A new column's kind: the declared hint if any value fits it, else the first value's."""
    kinds = [k for k in (kind_of(p.type) for p in parts if p.null_count < len(p)) if k]
    if declared and declared in KIND_TYPES:
        for part in parts:
            fits, _ = fit(part, declared)
            if fits is not None and fits.null_count < len(fits):
                return declared
    if not kinds:
        return None
    first = min(
        (p for p in parts if kind_of(p.type) and p.null_count < len(p)),
        key=lambda p: pc.index(p.is_valid(), True).as_py(),
    )
    return kind_of(first.type)


def fit(values: pa.Array, target: str) -> tuple[Optional[pa.Array], Optional[pa.Array]]:
    """(the values that are ``target`` without loss, as ``target``, null elsewhere;
    the others, in their own type, null elsewhere; None when there are none)."""
    arrow = KIND_TYPES.get(target)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_null(values.type):
        return (pa.nulls(len(values), arrow) if arrow is not None else None), None
    if arrow is None:
        return None, values
    own = kind_of(values.type)
    if own == target:
        return _cast(values, arrow), None
    if values.null_count == len(values):  # nulls in a typed array (a page of nulls): nothing to vary
        return pa.nulls(len(values), arrow), None
    mask = _fits_mask(values, own, target)
    if mask is None:
        return pa.nulls(len(values), arrow), values
    mask = pc.fill_null(mask, False)
    if not pc.any(mask).as_py():
        return pa.nulls(len(values), arrow), values
    fitting = pc.if_else(mask, values, pa.scalar(None, values.type))
    try:
        converted = _cast(fitting, arrow)
    except ARROW_CAST_ERRORS:
        return _fit_each(values, arrow)
    rest = pc.if_else(mask, pa.scalar(None, values.type), values)
    return converted, (rest if rest.null_count < len(rest) else None)


def _fits_mask(values: pa.Array, own: Optional[str], target: str) -> Optional[pa.Array]:
    if own == "bigint" and target == "double":
        return pc.less_equal(pc.abs(values), EXACT_DOUBLE_INTEGERS)
    if own == "double" and target == "bigint":
        finite = pc.is_finite(values)
        integral = pc.equal(pc.floor(values), values)
        in_range = pc.less(pc.abs(values), 2.0**63)
        return pc.and_(pc.and_(finite, integral), in_range)
    if own == "text" and target == "date":
        return pc.match_substring_regex(values, ISO_DATE)
    if own == "text" and target == "timestamp":
        return pc.match_substring_regex(values, ISO_TIMESTAMP)
    if own == "bigint" and target == "decimal":
        return pc.is_valid(values)
    return None


def _fit_each(values: pa.Array, arrow: pa.DataType) -> tuple[pa.Array, Optional[pa.Array]]:
    """Value by value, for a page where some values pass the pattern but not the cast
    (``2024-02-30``)."""
    fits: list[Any] = []
    rest: list[Any] = []
    for value in values:
        try:
            converted = pa.array([value.as_py()], values.type).cast(arrow)[0].as_py() if value.is_valid else None
        except ARROW_CAST_ERRORS:
            fits.append(None)
            rest.append(value.as_py())
            continue
        fits.append(converted)
        rest.append(None)
    rest_array = pa.array(rest, values.type)
    return pa.array(fits, arrow), (rest_array if rest_array.null_count < len(rest_array) else None)


def _rest_kinds(rest: Optional[pa.Array], target: str) -> Iterable[tuple[str, pa.Array]]:
    """What did not fit, by the variant it lands in. Text that is a timestamp where
    the column holds dates (or a date where it holds timestamps) keeps its type."""
    if rest is None:
        return
    own = kind_of(rest.type)
    assert own is not None  # fit() leaves no rest for the null type
    if own == "text" and target in ("date", "timestamp"):
        other = "timestamp" if target == "date" else "date"
        fits, left = fit(rest, other)
        if fits is not None and fits.null_count < len(fits):
            yield other, fits
        if left is None:
            return
        rest = left
    yield own, _cast(rest, KIND_TYPES[own])


def _cast(values: pa.Array, arrow: pa.DataType) -> pa.Array:
    return values if values.type == arrow else values.cast(arrow)
