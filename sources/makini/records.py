"""Turn one page of Makini records into Arrow tables for dlt.

Yielding Arrow tables lets dlt skip its per-row Python normaliser, which is
where a generic REST source spends most of its time. The conversion is
column-wise and keeps each column's type stable across pages of a run: a column
takes its type from the entity table, or from its first page, and later pages
are cast to it; a value that cannot be is rejected with the field named.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from . import exact_json, lifted_read
from .column_kinds import ARROW_CAST_ERRORS, KIND_TYPES, TIMESTAMP, ColumnKinds, Origin
from .errors import MalformedResponse
from .settings import (
    CONNECTION_COLUMN,
    DELETED_AT_COLUMN,
    ID_COLUMN,
    JSON_FIELDS,
    UPDATED_AT_COLUMN,
    ChildTable,
    Entity,
)

TIMESTAMP_COLUMNS = frozenset({"created_at", UPDATED_AT_COLUMN, DELETED_AT_COLUMN})


class _ColumnarRefused(Exception):
    """The columnar path declines a page (or a page's child items) on purpose, and
    the caller takes the row path. Raised only by ``_infer`` (Arrow cannot type
    the values together) and by checks that find something Arrow would not give
    back as sent; nothing outside this module raises or catches it, so any other
    exception, a TypeError from a bug included, propagates instead of quietly
    sending the page down the slower path."""


def _infer(values: list) -> pa.Array:
    """``pa.array(values)``; Arrow's refusal to type them together, as ``_ColumnarRefused``."""
    try:
        return pa.array(values)
    except ARROW_CAST_ERRORS as exc:
        raise _ColumnarRefused(f"Arrow cannot type the values together: {exc}") from exc


def json_text(value: Any) -> str:
    return exact_json.dumps(value).decode()


def _put(name: str, value: Any, out: dict) -> None:
    """Nested objects become ``parent__child`` columns, as dlt's normaliser does;
    arrays become JSON text."""
    if isinstance(value, dict):
        for key, inner in value.items():
            _put(f"{name}__{key}", inner, out)
    elif isinstance(value, list):
        out[name] = json_text(value)
    else:
        out[name] = value


def _flat_row(record: dict, skip: frozenset[str]) -> dict:
    row: dict[str, Any] = {}
    for key, value in record.items():
        if key in skip:
            continue
        if key in JSON_FIELDS:
            row[key] = value if value is None or isinstance(value, str) else json_text(value)  # _validate made it text
        else:
            _put(key, value, row)
    return row


@dataclass
class Prepared:
    """One page's tables before they are landed on the run's column kinds (``PageConverter.prepare``)."""

    tables: dict[str, pa.Table]
    splits: dict[str, dict[str, list[pa.Array]]]  # per table, a column's parts by value type (``_typed_table``)
    stayed_columnar: bool
    children_by_row: bool
    rows: int  # the page's records


class PageConverter:
    """Converts pages of one entity of one connection; remembers column types."""

    def __init__(self, entity: Entity, connection_id: str, documents: bool = False,
                 kinds: ColumnKinds | None = None) -> None:
        self.entity = entity
        self.documents = documents  # keep children and nested objects inside the record
        self.connection_id = connection_id
        self.kinds = kinds if kinds is not None else ColumnKinds()
        self.stayed_columnar = True
        self.children_by_row = False
        self._plans: dict[tuple, pa.Schema] = {}
        self._renames = {
            **entity.renames,
            entity.primary_key: ID_COLUMN,
            entity.updated_at: UPDATED_AT_COLUMN,
            entity.deleted_at: DELETED_AT_COLUMN,
        }
        self._skip = frozenset(c.field for c in entity.children)
        self._keys: dict[str, tuple[str, ...]] = {entity.table: (CONNECTION_COLUMN, ID_COLUMN)}
        for child in entity.children:
            self._keys[child.table] = (CONNECTION_COLUMN, child.parent_column, child.key)

    def convert(self, records: list, request_id: str | None = None) -> dict[str, pa.Table]:
        """Tables keyed by warehouse table name: the entity's, then its children's.

        The common case runs in Arrow's C++ (type inference, struct
        flattening, list explosion); a page Arrow cannot type on its own
        (mixed or oversized values) takes the row-by-row path.
        """
        return self.land(self.prepare(records, request_id), request_id)

    def prepare(self, records: list, request_id: str | None = None) -> Prepared:
        """The part of ``convert`` that needs nothing from earlier pages: the page's
        tables before they are landed on the run's column kinds (``land``). It
        depends only on the records and the entity, so a worker process can do
        it (``page_workers.py``)."""
        self._validate(records, request_id)
        splits: dict[str, dict[str, list[pa.Array]]] = {}
        stayed_columnar = True  # for the report: whether the page avoided the row-by-row path
        children_by_row = False  # for the report: whether only the child tables took it
        pulled = {} if self.documents else self._pull_mixed(records)
        try:
            tables = self._convert_columnar(records)
        except (_ColumnarRefused, *ARROW_CAST_ERRORS):  # refused on purpose, or data Arrow cannot take
            without_children = self._columnar_without_children(records, splits, request_id)
            if without_children is not None:
                tables, children_by_row = without_children
            else:
                _put_back(records, pulled)
                pulled = {}
                tables, splits = self._convert_rows(records, request_id)
                stayed_columnar = False
        if pulled:
            tables[self.entity.table], splits[self.entity.table] = self._with_pulled(tables[self.entity.table], pulled)
        return Prepared(tables, splits, stayed_columnar, children_by_row, len(records))

    def land(self, prepared: Prepared, request_id: str | None = None) -> dict[str, pa.Table]:
        """A prepared page's tables on the run's column kinds (``_final_types``), in order."""
        self.stayed_columnar, self.children_by_row = prepared.stayed_columnar, prepared.children_by_row
        return {
            name: self._final_types(name, table, request_id, prepared.splits.get(name))
            for name, table in prepared.tables.items()
        }

    def _objects_print_back(self, array: pa.StructArray) -> bool:
        return _objects_print_back(array, frozenset(c.field for c in self.entity.children) | JSON_FIELDS)

    def _columnar_without_children(self, records: list, splits: dict,
                                   request_id: str | None) -> tuple[dict, bool] | None:
        """The page with its child arrays taken out and converted on their own, the
        records staying columnar; None when the records still do not convert.

        A child array whose items differ in type (a quantity ``12`` on one line
        and ``"12.5"`` on the next) makes Arrow refuse the whole page, while the
        records themselves would convert: converting the lines apart kept the
        drift shape's purchase orders columnar (benchmarks/sync_benchmark.py).
        """
        if self.documents or not self.entity.children:
            return None
        fields = [c.field for c in self.entity.children]
        by_row = False
        taken = {f: [record.pop(f, _ABSENT) for record in records] for f in fields}
        try:
            tables = self._convert_columnar(records)
        except (_ColumnarRefused, *ARROW_CAST_ERRORS):  # refused on purpose, or data Arrow cannot take
            _put_back(records, taken)
            return None
        try:
            parents = tables[self.entity.table]
            for child in self.entity.children:
                items = self._child_items(child, records, taken[child.field], request_id)
                if not items[0]:
                    continue  # no lines on this page
                lines = self._columnar_children(child, items, parents)
                if lines is None:
                    lines = self._children_by_row(child, records, taken[child.field], request_id)
                    by_row = True
                if lines is not None:
                    tables[child.table], splits[child.table] = lines
        finally:
            _put_back(records, taken)
        return tables, by_row

    def _child_items(self, child: ChildTable, records: list, arrays: list,
                     request_id: str | None) -> tuple[list[dict], list[int], list[int]]:
        """Every item of the child arrays, with its record's index and its position (from 1)."""
        items, owners, positions = [], [], []
        for index, (record, values) in enumerate(zip(records, arrays, strict=True)):
            values = None if values is _ABSENT else values or []  # as ``_child_rows`` reads it
            if not values:
                continue
            owner = str(record[self.entity.primary_key])
            if not isinstance(values, list):
                raise self._malformed(f"{child.field!r} of {owner!r} is not an array", request_id)
            for position, item in enumerate(values):
                if not isinstance(item, dict):
                    raise self._malformed(f"{child.field}[{position}] of {owner!r} is not an object", request_id)
                items.append(item)
                owners.append(index)
                positions.append(position + 1)
        return items, owners, positions

    def _columnar_children(self, child: ChildTable, found: tuple[list[dict], list[int], list[int]],
                           parents: pa.Table) -> tuple[pa.Table, dict] | None:
        """The child table in Arrow, the items' mixed fields row by row beside it
        (as the records' are); None when the items do not convert, or when the
        row path decides their columns (``_row_path_decides``, or a key that mixes types)."""
        items, owners, positions = found
        pulled = _pull_mixed_fields(items, frozenset())
        try:
            array = _infer(items)
            names = {array.type.field(i).name for i in range(array.type.num_fields)} | pulled.keys()
            if child.key in pulled or _row_path_decides(child, names):
                return None
            if _flag_among_floats(items, array.type) or not _objects_print_back(array, frozenset()):
                return None
            rows = pa.Table.from_struct_array(array)
            take = pa.array(owners, pa.int64())
            lines = pa.table({
                CONNECTION_COLUMN: self._connection_column(len(items)),
                child.parent_column: parents[ID_COLUMN].take(take),
                child.version_column: parents[UPDATED_AT_COLUMN].take(take),
            })
            for name in rows.column_names:
                lines = lines.append_column(name, rows[name])
            lines, splits = _with_pulled_fields(_flatten_structs(lines), pulled, {})
            return _numbered(lines, child.key, positions), splits
        except (_ColumnarRefused, *ARROW_CAST_ERRORS):  # refused on purpose, or data Arrow cannot take
            return None
        finally:
            _put_back(items, pulled)

    def _children_by_row(self, child: ChildTable, records: list, arrays: list,
                         request_id: str | None) -> tuple[pa.Table, dict] | None:
        pk, updated = self.entity.primary_key, self.entity.updated_at
        rows: list[dict] = []
        for record, items in zip(records, arrays, strict=True):
            parent = {ID_COLUMN: str(record[pk]), UPDATED_AT_COLUMN: record[updated]}
            rows.extend(self._child_rows(child, {child.field: None if items is _ABSENT else items}, parent,
                                         request_id))
        return _typed_table(rows) if rows else None

    def _pull_mixed(self, records: list) -> dict[str, list]:
        fixed = frozenset({self.entity.primary_key, self.entity.updated_at, self.entity.deleted_at} | self._skip)
        return _pull_mixed_fields(records, fixed)

    def _with_pulled(self, table: pa.Table, pulled: dict[str, list]) -> tuple[pa.Table, dict]:
        return _with_pulled_fields(table, pulled, self._renames)

    def _validate(self, records: list, request_id: str | None) -> None:
        pk, updated = self.entity.primary_key, self.entity.updated_at
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise self._malformed(f"record {index} is not an object", request_id)
            key = record.get(pk)
            if not isinstance(key, (str, int)) or isinstance(key, bool) or key == "":
                raise self._malformed(f"record {index} has no usable {pk!r}", request_id)
            if not isinstance(record.get(updated), str):
                raise self._malformed(f"record {key!r} has no {updated!r} timestamp", request_id)
            for field_name in JSON_FIELDS:
                value = record.get(field_name)
                if value is not None and not isinstance(value, str):
                    record[field_name] = json_text(value)

    def convert_arrow(self, table: pa.Table, request_id: str | None = None) -> dict[str, pa.Table]:
        """A page Arrow's JSON reader parsed (``client.arrow_page``); a page it cannot
        vouch for takes the checked path through ``convert``. Binary columns are fields
        lifted as the JSON text the API sent (``lifted_read.py``): they are parsed and
        typed as the row path does, beside the columns Arrow typed."""
        if not self._arrow_usable(table):
            return self._convert_listed(table, request_id)
        self.stayed_columnar, self.children_by_row = True, False
        for field_name in JSON_FIELDS & set(table.column_names):
            column = table[field_name]
            if not pa.types.is_string(column.type):
                table = table.set_column(table.schema.get_field_index(field_name), field_name, _json_column(column))
        lifted = [field.name for field in table.schema if lifted_read.is_raw(field.type)]
        splits: dict[str, dict[str, list[pa.Array]]] = {}
        try:
            tables = self._from_arrow(table.drop_columns(lifted), splits)
            if lifted:
                pulled = {name: lifted_read.raw_values(table[name]) for name in lifted}
                tables[self.entity.table], splits[self.entity.table] = self._with_pulled(tables[self.entity.table],
                                                                                         pulled)
        except (_ColumnarRefused, *ARROW_CAST_ERRORS):  # refused on purpose, or data Arrow cannot take
            return self._convert_listed(table, request_id)
        return {
            name: self._final_types(name, t, request_id, splits.get(name))
            for name, t in tables.items()
        }

    def _convert_listed(self, table: pa.Table, request_id: str | None) -> dict[str, pa.Table]:
        tables = self.convert(_listed(table, frozenset(c.field for c in self.entity.children)), request_id)
        self.stayed_columnar = False
        return tables

    def _arrow_usable(self, table: pa.Table) -> bool:
        names = table.column_names
        pk, updated = self.entity.primary_key, self.entity.updated_at
        if table.num_rows == 0 or pk not in names or updated not in names:
            return False
        key, stamp = table[pk], table[updated]
        if key.null_count or stamp.null_count or not pa.types.is_string(stamp.type):
            return False
        if pa.types.is_string(key.type):
            return not pc.any(pc.equal(key, "")).as_py()
        return pa.types.is_integer(key.type)

    def _convert_columnar(self, records: list) -> dict[str, pa.Table]:
        if not records:
            return {self.entity.table: pa.table({})}
        array = _infer(records)
        if _flag_among_floats(records, array.type):
            raise _ColumnarRefused("a flag among numbers")  # Arrow's inference read True as 1.0
        if not self._objects_print_back(array):
            raise _ColumnarRefused("an array inside an object that Arrow would not print back as sent")
        return self._from_arrow(pa.Table.from_struct_array(array))

    def _from_arrow(self, table: pa.Table, splits: dict | None = None) -> dict[str, pa.Table]:
        table = table.rename_columns([self._renames.get(n, n) for n in table.column_names])
        if not pa.types.is_string(table.schema.field(ID_COLUMN).type):
            table = table.set_column(table.schema.get_field_index(ID_COLUMN), ID_COLUMN, table[ID_COLUMN].cast(pa.string()))
        tables: dict[str, pa.Table] = {}
        if self.documents:
            table = table.add_column(0, CONNECTION_COLUMN, self._connection_column(table.num_rows))
            return {self.entity.table: table}
        for child in self.entity.children:
            if child.field in table.column_names:
                items = table[child.field].combine_chunks()
                table = table.drop_columns([child.field])
                if pa.types.is_null(items.type):
                    continue
                if not pa.types.is_list(items.type) or not pa.types.is_struct(items.type.value_type):
                    raise _ColumnarRefused("child field is not a list of objects")  # row path reports it
                flat = pc.list_flatten(items)
                names = {flat.type.field(i).name for i in range(flat.type.num_fields)}
                if flat.null_count or _row_path_decides(child, names):
                    raise _ColumnarRefused("line items the row path converts")  # a null item is reported there
                parents = pc.list_parent_indices(items)
                rows = pa.Table.from_struct_array(flat)
                lifted = [field.name for field in rows.schema if lifted_read.is_raw(field.type)]
                if child.key in lifted:
                    raise _ColumnarRefused("a child key that drifts in type")  # the row path numbers it
                if rows.num_rows:
                    lines = pa.table({
                        CONNECTION_COLUMN: self._connection_column(rows.num_rows),
                        child.parent_column: table[ID_COLUMN].take(parents),
                        child.version_column: table[UPDATED_AT_COLUMN].take(parents),
                    })
                    for name in rows.column_names:
                        if name not in lifted:
                            lines = lines.append_column(name, rows[name])
                    starts = items.offsets.take(parents).cast(pa.int64())
                    positions = pc.add(pc.subtract(pa.array(range(rows.num_rows), pa.int64()), starts), 1)
                    pulled = {name: lifted_read.raw_values(rows[name]) for name in lifted}
                    lines, lifted_splits = _with_pulled_fields(_flatten_structs(lines), pulled, {})
                    tables[child.table] = _numbered(lines, child.key, positions)
                    if lifted_splits and splits is not None:
                        splits[child.table] = lifted_splits
        table = table.add_column(0, CONNECTION_COLUMN, self._connection_column(table.num_rows))
        return {self.entity.table: _flatten_structs(table), **tables}

    def _convert_rows(self, records: list, request_id: str | None) -> tuple[dict[str, pa.Table], dict]:
        rows: list[dict] = []
        children: dict[str, list[dict]] = {c.table: [] for c in self.entity.children}
        for record in records:
            if self.documents:
                rows.append(self._document(record))
                continue
            canonical = self._canonical(record)
            rows.append(canonical)
            for child in self.entity.children:
                children[child.table].extend(self._child_rows(child, record, canonical, request_id))
        tables, splits = {}, {}
        tables[self.entity.table], splits[self.entity.table] = _typed_table(rows)
        for name, child_rows in children.items():
            if child_rows:
                tables[name], splits[name] = _typed_table(child_rows)
        return tables, splits

    def _document(self, record: dict) -> dict:
        renamed = {self._renames.get(k, k): v for k, v in record.items()}
        row = {CONNECTION_COLUMN: self.connection_id}
        row.update({k: json_text(v) if isinstance(v, (dict, list)) else v for k, v in renamed.items()})
        row[ID_COLUMN] = str(renamed[ID_COLUMN])
        return row

    def _canonical(self, record: dict) -> dict:
        renamed = {self._renames.get(k, k): v for k, v in record.items()}
        row = {CONNECTION_COLUMN: self.connection_id}
        row.update(_flat_row(renamed, self._skip))
        row[ID_COLUMN] = str(renamed[ID_COLUMN])
        return row

    def _child_rows(self, child: ChildTable, record: dict, parent: dict, request_id) -> list[dict]:
        items = record.get(child.field) or []
        if not isinstance(items, list):
            raise self._malformed(f"{child.field!r} of {parent[ID_COLUMN]!r} is not an array", request_id)
        out = []
        for position, item in enumerate(items):
            if not isinstance(item, dict):
                raise self._malformed(f"{child.field}[{position}] of {parent[ID_COLUMN]!r} is not an object", request_id)
            row = {
                CONNECTION_COLUMN: self.connection_id,
                child.parent_column: parent[ID_COLUMN],
                child.version_column: parent[UPDATED_AT_COLUMN],
            }
            row.update(_flat_row(item, frozenset()))
            if row.get(child.key) is None:
                row[child.key] = position + 1
            out.append(row)
        return out

    def _connection_column(self, rows: int) -> pa.Array:
        return pa.repeat(pa.scalar(self.connection_id, pa.string()), rows)

    def _final_types(self, name: str, table: pa.Table, request_id: str | None,
                     splits: dict[str, list[pa.Array]] | None = None) -> pa.Table:
        """``_land`` then ``_required``, as one cast once a page of the same shape landed whole.

        Pages of a walk nearly always share their Arrow schema, and landing
        column by column costs a Python round per column and page; a landing
        that put every column in its own column (no variant) is kept per
        (table, page schema, which keys are complete, kinds known) and replayed
        as a single safe cast. A page the cast fails on (a value that does not
        fit) lands column by column.
        """
        keys = self._keys[name]
        complete = tuple(name_ not in table.column_names or table[name_].null_count == 0 for name_ in keys)
        plan = None if splits else self._plans.get((name, table.schema, complete, self.kinds.version))
        if plan is not None and self.kinds.text_without_nul and _holds_nul(table):
            plan = None  # such text lands in a binary variant, column by column
        if plan is not None:
            try:
                return table.cast(plan)
            except ARROW_CAST_ERRORS:
                pass
        schema = table.schema
        landed = _required(self._land(name, table, request_id, splits or {}), keys)
        if not splits and landed.column_names == schema.names:
            # kept under the kinds after this page's learning: the ones the next page sees
            self._plans[(name, schema, complete, self.kinds.version)] = landed.schema
        return landed

    def _land(self, name: str, table: pa.Table, request_id: str | None,
              splits: dict[str, list[pa.Array]]) -> pa.Table:
        """Each column to its kind for this table; what does not fit, to variant columns."""
        origin = Origin(self.connection_id, request_id)
        known_table = self.kinds.known(name)
        fixed = self._fixed_types(name)
        arrays: dict[str, pa.Array] = {}
        for column in table.column_names:
            array = table[column].combine_chunks()
            if column in fixed:
                arrays[column] = self._strict(column, array, fixed[column], request_id)
                continue
            if self.documents:
                arrays[column] = array  # documents keep values as they come
                continue
            parts = [array, *splits.get(column, ())]
            declared = self._declared(column)
            for landed_name, landed in self.kinds.land(name, column, parts, declared, origin, known_table):
                arrays[landed_name] = landed if landed_name not in arrays else pc.coalesce(arrays[landed_name], landed)
        return pa.table(arrays)

    def _fixed_types(self, name: str) -> dict[str, pa.DataType]:
        """Columns whose type the contract fixes (keys, versions): cast, never varied."""
        fixed = {CONNECTION_COLUMN: pa.string(), UPDATED_AT_COLUMN: TIMESTAMP}
        if name == self.entity.table:
            fixed[ID_COLUMN] = pa.string()
        for child in self.entity.children:
            if child.table == name:
                fixed[child.parent_column] = pa.string()
                fixed[child.version_column] = TIMESTAMP
        return fixed

    def _strict(self, column: str, array: pa.Array, target: pa.DataType, request_id: str | None) -> pa.Array:
        if array.type == target:
            return array
        try:
            return array.cast(target) if not pa.types.is_null(array.type) else pa.nulls(len(array), target)
        except ARROW_CAST_ERRORS as exc:
            raise self._malformed(
                f"field {column!r} holds a value that is not {target}: {str(exc)[:160]}", request_id
            ) from None

    def _declared(self, column: str) -> str | None:
        if column in TIMESTAMP_COLUMNS or column.endswith("_updated_at"):
            return "timestamp"
        return self.entity.column_types.get(column)

    def _malformed(self, detail: str, request_id: str | None) -> MalformedResponse:
        return MalformedResponse(
            detail, connection=self.connection_id, entity=self.entity.table, request_id=request_id
        )


def prints_back(values: pa.Array) -> bool:
    """Whether a free-form JSON field, as Arrow typed it, prints back as the API wrote it.

    Arrow infers one type for all records: a timestamp-looking string becomes
    a timestamp (printed back reformatted), an integer among floats a float
    (1 becomes 1.0), a key some records lack a null (a key they never had).
    Text, integers, flags, objects and arrays of those, with no nulls inside,
    print back as sent; anything else sends the page down the orjson path.
    """
    if pa.types.is_null(values.type):
        return True  # the field is null (or absent) in every record: stored as NULL
    return _prints_back_inside(values.filter(values.is_valid()))  # a null field is stored as NULL


def nested_lists_print_back(values: pa.Array) -> bool:
    """Whether every array inside an object column prints back as sent (``_prints_back``)."""
    if pa.types.is_struct(values.type):
        return all(nested_lists_print_back(values.field(i)) for i in range(values.type.num_fields))
    if pa.types.is_list(values.type):
        return prints_back(values)
    return True


def items_print_back(values: pa.Array) -> bool:
    """Whether a child array's items print back as sent, as Arrow typed them: their
    arrays and free-form objects (``prints_back``), and the arrays inside their objects.
    Arrow types an item field's arrays together across the page, so ``[1, 2.5]``
    and ``[3]`` would come back as ``[1.0,2.5]`` and ``[3.0]``."""
    if not pa.types.is_list(values.type) or not pa.types.is_struct(values.type.value_type):
        return True  # not an array of objects: the converter reports what it is
    items = values.flatten()
    return _objects_print_back(items, frozenset()) and all(
        prints_back(items.field(field.name)) for field in items.type if field.name in JSON_FIELDS)


def _prints_back_inside(values: pa.Array) -> bool:
    kind = values.type
    if values.null_count:
        return False
    if pa.types.is_struct(kind):
        return all(_prints_back_inside(values.field(i)) for i in range(kind.num_fields))
    if pa.types.is_list(kind):
        return _prints_back_inside(values.flatten())
    return pa.types.is_string(kind) or pa.types.is_int64(kind) or pa.types.is_boolean(kind)


def _objects_print_back(records: pa.StructArray, skip: frozenset) -> bool:
    """Whether every array inside the records' objects prints back as sent
    (``nested_lists_print_back``), and so does every array inside their child
    items: Arrow types an array's values together (``[1, 2.5]`` becomes
    ``[1.0, 2.5]``, objects gain each other's keys as nulls), and such a field
    then goes row by row, which keeps it as sent."""
    kind = records.type
    for index in range(kind.num_fields):
        field = kind.field(index)
        values = records.field(index)
        if field.name in JSON_FIELDS:
            continue
        if field.name in skip:
            if pa.types.is_list(field.type) and pa.types.is_struct(field.type.value_type):
                if not _objects_print_back(values.flatten(), frozenset()):
                    return False
            continue
        if pa.types.is_struct(field.type) and not nested_lists_print_back(values):
            return False
        if pa.types.is_list(field.type) and not prints_back(values):
            return False  # the records' own arrays are pulled before; a child item's are not
    return True


def _pull_mixed_fields(records: list, fixed: frozenset) -> dict[str, list]:
    """Take out of the records the fields whose values differ in kind (an object
    on one record, an array or text on the next) or hold arrays: Arrow cannot type
    them together, and without them the rest of the page stays columnar.

    It looks at every value of the page, so it is written for speed: types are
    collected first and classified once per field and type (on the drift shape
    a call per value took a seventh of the conversion, benchmarks/sync_benchmark.py)."""
    types: dict[str, set] = {}
    for record in records:
        for key, value in record.items():
            found = types.get(key)
            if found is None:
                types[key] = {type(value)}
            else:
                found.add(type(value))
    mixed = []
    for key, found in types.items():
        if key in fixed:
            continue
        classes = {_CLASS_OF_TYPE.get(kind, "text") for kind in found if kind is not _NONE_TYPE}
        if len(classes) > 1 or "list" in classes:
            mixed.append(key)
        elif int in found and any(type(r.get(key)) is int and not _INT64_MIN <= r[key] <= _INT64_MAX for r in records):
            mixed.append(key)  # beyond Arrow's integers: such a field lands row by row, exactly
    return {key: [record.pop(key, _ABSENT) for record in records] for key in mixed}


_NONE_TYPE = type(None)
_CLASS_OF_TYPE = {dict: "dict", list: "list", bool: "bool", int: "number", float: "number", str: "text"}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _with_pulled_fields(table: pa.Table, pulled: dict[str, list], renames: Mapping[str, str]) -> tuple[pa.Table, dict]:
    """The pulled fields flattened row by row (``_flat_row``'s rules) beside the table."""
    if not pulled:
        return table, {}
    splits: dict[str, list[pa.Array]] = {}
    nested: dict[str, list] = {}
    for key, values in pulled.items():
        name = renames.get(key, key)
        if any(type(value) is dict for value in values):
            nested[name] = values  # flattened into name__inner columns, row by row
            continue
        # scalars and arrays: one column, without building a row per record
        column = [None if value is _ABSENT else json_text(value) if type(value) is list else value for value in values]
        if name not in table.column_names:
            array, rest = _typed_column(column)
            table = table.append_column(name, array)
            if rest:
                splits[name] = rest
    if nested:
        rows: list[dict] = [{} for _ in range(table.num_rows)]
        for name, values in nested.items():
            for row, value in zip(rows, values, strict=True):
                if value is not _ABSENT and value is not None:
                    _put(name, value, row)
        extra, extra_splits = _typed_table(rows)
        for name in extra.column_names:
            if name not in table.column_names:
                table = table.append_column(name, extra[name])
                if name in extra_splits:
                    splits[name] = extra_splits[name]
    return table, splits


def _row_path_decides(child: ChildTable, item_fields: set) -> bool:
    """Whether line items with these fields take the row path, on every
    columnar path alike: free-form JSON inside an item (kept as JSON text
    there), or a field named like a column the child table adds."""
    return bool(item_fields & (JSON_FIELDS | {CONNECTION_COLUMN, child.parent_column, child.version_column}))


def _numbered(lines: pa.Table, key: str, positions: list[int] | pa.Array) -> pa.Table:
    """A child's key where the item has none: its position in the array (as ``_child_rows``)."""
    numbers = positions if isinstance(positions, pa.Array) else pa.array(positions, pa.int64())
    if key not in lines.column_names or pa.types.is_null(lines.schema.field(key).type):
        lines = lines.drop_columns([key]) if key in lines.column_names else lines
        return lines.append_column(key, numbers)
    column = lines[key]
    if not column.null_count:
        return lines
    if not pa.types.is_int64(column.type):
        raise _ColumnarRefused("a child key of another type than its position")  # the row path numbers it
    return lines.set_column(lines.schema.get_field_index(key), key, pc.coalesce(column, numbers))


def _flatten_structs(table: pa.Table) -> pa.Table:
    """Struct columns become ``parent__child`` columns; other nested values, JSON text."""
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    names = [n.replace(".", "__") for n in table.column_names]
    table = table.rename_columns(names)
    for index, field in enumerate(table.schema):
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type) or pa.types.is_map(field.type):
            text = [None if v is None else json_text(v) for v in table[field.name].to_pylist()]
            table = table.set_column(index, field.name, pa.array(text, pa.string()))
    return table


def _required(table: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    """Mark primary-key columns non-nullable, as the resource's hints declare them."""
    schema = table.schema
    for name in keys:
        index = schema.get_field_index(name)
        if index >= 0 and table[name].null_count == 0:
            schema = schema.set(index, schema.field(index).with_nullable(False))
    return table.cast(schema) if schema != table.schema else table


def _json_column(column: pa.ChunkedArray) -> pa.Array:
    """Each value as JSON text, as ``json_text`` writes it (null stays null)."""
    values = column.combine_chunks()
    if pa.types.is_struct(values.type):
        text = _json_objects(values)
        if text is not None:
            return text
    return pa.array([None if v is None else json_text(v) for v in values.to_pylist()], pa.string())


def _json_objects(objects: pa.StructArray) -> pa.Array | None:
    """JSON text of flat objects of text, integers and flags, built column-wise in
    Arrow, where value by value costs a Python call each; None for
    anything else (nested values, nulls inside, control characters), which
    goes value by value."""
    valid = objects.is_valid()
    parts: list[Any] = ["{"]
    for index, field in enumerate(objects.type):
        values = objects.field(index)
        if values.filter(valid).null_count:
            return None
        if pa.types.is_string(values.type):
            if pc.any(pc.match_substring_regex(values, r"[\x00-\x1f]")).as_py():
                return None  # JSON escapes these as \n, \u0000, ...: left to orjson
            escaped = pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')
            parts += ["," * bool(index) + json_text(field.name) + ':"', escaped, '"']
        elif pa.types.is_int64(values.type):
            parts += ["," * bool(index) + json_text(field.name) + ":", values.cast(pa.string())]
        elif pa.types.is_boolean(values.type):
            parts += ["," * bool(index) + json_text(field.name) + ":", pc.if_else(values, "true", "false")]
        else:
            return None
    parts.append("}")
    if len(parts) == 2:
        text = pa.repeat(pa.scalar("{}"), len(objects))
    else:
        text = pc.binary_join_element_wise(*parts, "")
    return pc.if_else(valid, text, pa.scalar(None, pa.string()))


_ABSENT = object()  # a pulled field the record did not have


def _listed(table: pa.Table, child_fields: frozenset) -> list[dict]:
    """The page's records as Python objects, lifted fields (``lifted_read.py``) parsed."""
    records = table.to_pylist()
    for field in table.schema:
        if lifted_read.is_raw(field.type):
            for record, value in zip(records, lifted_read.raw_values(table[field.name]), strict=True):
                record[field.name] = value
        elif field.name in child_fields and pa.types.is_list(field.type) and pa.types.is_struct(field.type.value_type):
            for inner in field.type.value_type:
                if lifted_read.is_raw(inner.type):
                    items = [item for record in records for item in record.get(field.name) or ()]
                    values = lifted_read.raw_values(pa.array([item[inner.name] for item in items], inner.type))
                    for item, value in zip(items, values, strict=True):
                        item[inner.name] = value
    return records


def _put_back(records: list, pulled: dict[str, list]) -> None:
    for key, values in pulled.items():
        for record, value in zip(records, values, strict=True):
            if value is not _ABSENT:
                record[key] = value


def _holds_nul(table: pa.Table) -> bool:
    return any(
        pc.any(pc.match_substring(table[name], "\x00")).as_py()
        for name in table.column_names if pa.types.is_string(table.schema.field(name).type)
    )


def _flag_among_floats(records: list, kind: pa.DataType) -> bool:
    """Whether a field Arrow typed as a float holds a bool in some record.

    Only the float fields' values are looked at: walking every value of the
    page in Python took a tenth of the nulls shape's conversion time
    (benchmarks/sync_benchmark.py)."""
    paths = _float_paths(kind)
    return bool(paths) and any(_bool_at(record, path) for path in paths for record in records)


def _float_paths(kind: pa.DataType, path: tuple = ()) -> list[tuple]:
    """Paths to float leaves: field names, and None for "each item of a list"."""
    if pa.types.is_floating(kind):
        return [path]
    if pa.types.is_struct(kind):
        return [p for i in range(kind.num_fields) for p in _float_paths(kind.field(i).type, (*path, kind.field(i).name))]
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _float_paths(kind.value_type, (*path, None))
    return []


def _bool_at(value: Any, path: tuple) -> bool:
    if not path:
        return isinstance(value, bool)
    step, rest = path[0], path[1:]
    if step is None:
        return isinstance(value, list) and any(_bool_at(item, rest) for item in value)
    return isinstance(value, dict) and _bool_at(value.get(step), rest)


def _typed_table(rows: list[dict]) -> tuple[pa.Table, dict[str, list[pa.Array]]]:
    """Rows to a table. A column whose values Arrow cannot type together is split
    by the values' types: the table holds the first part, ``splits`` the others
    (each null where another part holds the value), for ``ColumnKinds.land``."""
    columns: dict[str, None] = {}
    for row in rows:
        for column in row:
            columns.setdefault(column)
    arrays, splits = {}, {}
    for column in columns:
        arrays[column], rest = _typed_column([row.get(column) for row in rows])
        if rest:
            splits[column] = rest
    return pa.table(arrays), splits


def _typed_column(values: list) -> tuple[pa.Array, list[pa.Array]]:
    """One column's values as an array, or, when Arrow cannot type them together,
    the first part by type and the others (``_typed_table``)."""
    try:
        array = _infer(values)
    except _ColumnarRefused:
        array = None
    # a flag after a number: Arrow reads True as 1.0 there
    if array is None or (pa.types.is_floating(array.type) and any(isinstance(v, bool) for v in values)):
        parts = _parts_by_type(values)
        return parts[0], parts[1:]
    return array, []


def _parts_by_type(values: list) -> list[pa.Array]:
    """One array per Python type among ``values``, in order of first appearance."""
    order: dict[Any, None] = {}
    for value in values:
        if value is not None:
            order.setdefault(_value_kind(value))
    parts = []
    for kind in order:
        chosen = [v if v is not None and _value_kind(v) == kind else None for v in values]
        parts.append(_exact_array(chosen, kind))
    return parts


def _value_kind(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return "big"
    return type(value)


def _exact_array(values: list, kind: Any) -> pa.Array:
    if kind == "big":
        if all(v is None or len(str(abs(v))) <= 38 for v in values):
            return pa.array([None if v is None else decimal.Decimal(v) for v in values], KIND_TYPES["decimal"])
        return pa.array([None if v is None else str(v) for v in values], pa.string())
    if kind in (dict, list):
        return pa.array([None if v is None else json_text(v) for v in values], pa.string())
    return pa.array(values)
