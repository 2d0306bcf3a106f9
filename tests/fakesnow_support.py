"""dlt's real ``snowflake`` destination, loading into fakesnow (Snowflake emulated on DuckDB).

Usage::

    from tests.fakesnow_support import fakesnow_destination

    def test_x(tmp_path, monkeypatch):
        monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
        with fakesnow_destination(tmp_path) as fs:
            pipeline = dlt.pipeline("p", destination=fs.destination, dataset_name="makini")
            pipeline.run(source, loader_file_format="parquet")
            fs.query("SELECT COUNT(*) FROM makini.purchase_orders")

or, to go through the project's own profile, use ``snowflake_profile()`` inside
the block: ``DESTINATION__SNOWFLAKE__CREDENTIALS`` is set for the duration of
the block, so ``Destination.from_reference("snowflake", destination_name=
"snowflake", ...)`` (what ``Profile.build`` does) finds the emulator.

Why in-process (``fakesnow.patch``) and not fakesnow's HTTP server: the server
would also run the connector's own wire code, but that code is Snowflake's, not
ours, and the statements dlt sends are identical either way. The in-process fake
starts instantly, needs no free port or subprocess, and a failing statement
raises in the test's own traceback.

Everything the emulator needs lives here. The product keeps using the real
connector; the only settings the tests add are ordinary dlt ones:

* ``loader_file_format="parquet"`` - the project's ``snowflake`` profile already
  says so. fakesnow implements neither CSV (``BINARY_FORMAT``) nor JSONL COPY by
  column name (but see patch 4 for dlt's own state table).
* ``supports_multiple_statements=False`` on the destination factory: fakesnow
  runs one statement per ``execute``. dlt then sends its merge statements one by
  one, inside the same transaction, which is also valid on Snowflake.

The fakesnow patches (numbered as in the code below) are applied with
``unittest.mock.patch`` for the duration of the block only, each wrapping one
fakesnow function and rewriting just the statement shape dlt emits before
handing over to fakesnow's own code:

1. PUT to a quoted stage (``_put_stage``).
2. FILE_FORMAT options separated by commas (``_parse_options``).
3. ``MATCH_BY_COLUMN_NAME='CASE_INSENSITIVE'`` quoted (``_copy_params``).
4. JSONL COPY by column name, for ``_dlt_pipeline_state`` only (``_copy_inserts``).

Nothing of dlt's is skipped: the pipeline state table is written and restored
from the destination as on Snowflake (``RESTORE_FROM_DESTINATION`` stays on).
What fakesnow itself does not emulate (so tests here cannot catch): Snowflake's
micro-partitions and clustering, ``QUERY_TAG``, warehouse/role switching, and
the exact float/timestamp precision of Snowflake (DuckDB types are used).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional
from unittest import mock

import fakesnow
import fakesnow.copy_into
import fakesnow.transforms
import snowflake.connector
import sqlglot
from dlt.common.destination import Destination
from sqlglot import Expr, exp

# Any account/user/password is accepted by fakesnow; the database name matters:
# fakesnow creates it on connect (dlt never creates databases, only schemas).
DATABASE = "MAKINI_TEST"
CREDENTIALS = f"snowflake://fake:snow@fakesnow/{DATABASE}?warehouse=WH&role=LOADER"


# --- patch 1: PUT to a quoted stage ------------------------------------------
# dlt emits   PUT 'file:///…/x.parquet' '@"MAKINI"."%TABLE"/"<load_id>"' OVERWRITE = TRUE, …
# i.e. the stage is a quoted string literal (valid Snowflake, needed for the
# quoted identifiers). sqlglot keeps it as a Var whose text still carries the
# single quotes, and fakesnow's put_stage rejects it ("does not start with @").
# fakesnow's own LIST handler unwraps exactly this form with
# ``sqlglot.parse_one(arg, read="snowflake").name``; we do the same for PUT.
# Safe: only a Put whose target is a quoted literal is rewritten, to the same
# stage reference unquoted; everything else reaches fakesnow untouched.
def _put_stage(original: Callable[..., Expr]) -> Callable[..., Expr]:
    def put_stage(expression: Expr, *args: Any, **kwargs: Any) -> Expr:
        if isinstance(expression, exp.Put):
            target = expression.args.get("target")
            text = target.text("this") if isinstance(target, exp.Var) else ""
            if text.startswith("'") and text.endswith("'"):
                unquoted = sqlglot.parse_one(text, read="snowflake").name
                expression.set("target", exp.Var(this=unquoted))
        return original(expression, *args, **kwargs)

    return put_stage


# --- patch 2: FILE_FORMAT = (A = 1, B = 2) ------------------------------------
# dlt emits   FILE_FORMAT = (TYPE = 'PARQUET', BINARY_AS_TEXT = FALSE, USE_LOGICAL_TYPE = TRUE)
# with commas (Snowflake accepts both commas and spaces). The sqlglot version
# fakesnow runs on turns each comma into an empty ``SequenceProperties`` node
# among the options, and fakesnow's ``parse_options`` asserts every node is a
# ``Property``. We flatten those nodes into their (possibly empty) list of
# properties. Safe: it only removes the comma artefacts; the real ``Property``
# nodes reach fakesnow in their original order. Patched where COPY uses it
# (``fakesnow.copy_into.parse_options``), not globally.
def _flatten(properties: Any) -> list[Expr]:
    flat: list[Expr] = []
    for prop in properties:
        if isinstance(prop, exp.SequenceProperties):
            flat.extend(_flatten(prop.expressions))
        else:
            flat.append(prop)
    return flat


def _parse_options(original: Callable[..., dict]) -> Callable[..., dict]:
    def parse_options(properties: Any) -> dict:
        return original(_flatten(properties))

    return parse_options


# --- patch 3: MATCH_BY_COLUMN_NAME='CASE_INSENSITIVE' -------------------------
# dlt emits the option value as a string literal; Snowflake accepts it quoted or
# bare, fakesnow only a bare word (``exp.Var``) and raises NotImplementedError
# otherwise. We turn a string literal into the same bare word before fakesnow
# parses the COPY parameters. Safe: fakesnow still validates the value against
# its CASE_SENSITIVE / CASE_INSENSITIVE / NONE enum.
def _copy_params(original: Callable[..., Any]) -> Callable[..., Any]:
    def params(expr: exp.Copy, *args: Any, **kwargs: Any) -> Any:
        for param in expr.args.get("params") or []:
            value = param.args.get("expression")
            if (
                isinstance(param, exp.CopyParameter)
                and param.this.name.upper() == "MATCH_BY_COLUMN_NAME"
                and isinstance(value, exp.Literal)
                and value.is_string
            ):
                param.set("expression", exp.Var(this=value.name))
        return original(expr, *args, **kwargs)

    return params


# --- patch 4: JSONL COPY by column name (dlt's state table) -------------------
# dlt writes ``_dlt_pipeline_state`` as gzipped JSONL whatever the loader file
# format, and loads it with COPY … FILE_FORMAT = (TYPE = 'JSON', …)
# MATCH_BY_COLUMN_NAME='CASE_INSENSITIVE'. fakesnow reads JSON only as one
# VARIANT per line and ignores MATCH_BY_COLUMN_NAME for it, so the COPY inserts
# one JSON value into a 7-column table and fails. Rather than switch off state
# sync (RESTORE_FROM_DESTINATION=false would hide the state table from the
# tests), we emulate what Snowflake does: each top-level key goes to the column
# of that name, case-insensitively, missing columns stay NULL. DuckDB's
# ``read_json`` infers the keys; ``INSERT … BY NAME`` matches them to the table
# case-insensitively and casts (the state's ``created_at`` string to TIMESTAMP).
# Safe: only COPY statements that are JSON *and* MATCH_BY_COLUMN_NAME are
# rewritten, which fakesnow would otherwise reject; dlt uses them for nothing
# else when the loader file format is parquet.
def _copy_inserts(original: Callable[..., list]) -> Callable[..., list]:
    def inserts(expr: exp.Copy, params: Any, urls: list[str], parquet_info: Any = None) -> list:
        if not (
            isinstance(params.file_format, fakesnow.copy_into.ReadJSON)
            and params.match_by_column_name != fakesnow.copy_into.MatchByColumnName.NONE
            and not isinstance(expr.args["files"][0], exp.Subquery)
        ):
            return original(expr, params, urls, parquet_info)
        return [
            exp.Insert(
                this=expr.this,
                expression=exp.select("*").from_(
                    exp.Table(
                        this=exp.func(
                            "read_json",
                            exp.Literal.string(url),
                            exp.EQ(this=exp.var("format"), expression=exp.Literal.string("newline_delimited")),
                        )
                    )
                ),
                by_name=True,
            )
            for url in urls
        ]

    return inserts


# name -> (fakesnow function wrapped, wrapper). Names are used by the test that
# shows each patch is still needed (it switches one off and expects dlt to fail).
PATCHES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "put_quoted_stage": ("fakesnow.transforms.put_stage", _put_stage),
    "file_format_commas": ("fakesnow.copy_into.parse_options", _parse_options),
    "match_by_column_name_quoted": ("fakesnow.copy_into._params", _copy_params),
    "jsonl_match_by_column_name": ("fakesnow.copy_into._inserts", _copy_inserts),
}


@contextlib.contextmanager
def _fakesnow_patches(without: frozenset[str] = frozenset()) -> Iterator[None]:
    unknown = without - PATCHES.keys()
    assert not unknown, f"no such fakesnow patch: {sorted(unknown)}"
    with contextlib.ExitStack() as stack:
        for target, wrap in (PATCHES[name] for name in PATCHES if name not in without):
            module_name, _, attr = target.rpartition(".")
            original = getattr(__import__(module_name, fromlist=[attr]), attr)
            stack.enter_context(mock.patch(target, wrap(original)))
        yield


@dataclass
class FakeSnowflake:
    """What a test needs from the emulator: the dlt destination and a way to look inside."""

    destination: Destination
    credentials: str
    db_path: Path

    def connect(self) -> Any:
        """A DB-API connection to the emulated database (fakesnow's, via the patched connector)."""
        return snowflake.connector.connect(database=DATABASE, schema="MAKINI")

    def query(self, sql: str, params: Optional[Any] = None) -> list[tuple]:
        """Run one statement in the emulated warehouse and return all rows."""
        with contextlib.closing(self.connect()) as conn, contextlib.closing(conn.cursor()) as cur:
            cur.execute(sql, params)
            return cur.fetchall()


def snowflake_profile(name: str = "snowflake") -> Any:
    """The project's ``snowflake`` profile from destinations.toml, as the test harness runs it.

    The one addition is the destination capability ``supports_multiple_statements=False``:
    without it dlt joins its merge statements with ``;`` and fakesnow fails with
    ``syntax error at or near "CREATE"``. Capabilities are factory arguments, not
    config, so it cannot come from an env variable. Credentials come from
    ``DESTINATION__SNOWFLAKE__CREDENTIALS``, set by ``fakesnow_destination``.
    """
    from makini_sync.destinations.profiles import load_profile

    return load_profile(name).with_settings(supports_multiple_statements=False)


@contextlib.contextmanager
def fakesnow_destination(
    tmp_path: Path,
    destination_name: str = "snowflake",
    without_patches: frozenset[str] = frozenset(),
    **settings: Any,
) -> Iterator[FakeSnowflake]:
    """Activate fakesnow with dlt's patches and yield a snowflake destination pointing at it.

    ``DESTINATION__<NAME>__CREDENTIALS`` is set while the block runs, so a profile
    built by name also reaches the emulator. ``settings`` go to the destination
    factory as any profile setting would. ``without_patches`` (names from
    ``PATCHES``) exists only to prove a patch is still needed.
    """
    db_path = Path(tmp_path) / "fakesnow"
    db_path.mkdir(parents=True, exist_ok=True)  # fakesnow requires it to exist
    env_key = f"DESTINATION__{destination_name.upper()}__CREDENTIALS"
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, {env_key: CREDENTIALS}))
        stack.enter_context(_fakesnow_patches(frozenset(without_patches)))
        # fakesnow translates dlt's column COMMENTs to DuckDB, which has none, and
        # sqlglot logs "CommentColumnConstraint unsupported" for every column.
        sqlglot_logger = logging.getLogger("sqlglot")
        stack.callback(sqlglot_logger.setLevel, sqlglot_logger.level)
        sqlglot_logger.setLevel(logging.ERROR)
        # create_schema_on_connect=False: dlt connects with schema=<dataset> before
        # the dataset exists and then runs CREATE SCHEMA itself, which would fail
        # if fakesnow had already created it on connect.
        stack.enter_context(fakesnow.patch(create_schema_on_connect=False, db_path=db_path))
        destination = Destination.from_reference(
            "snowflake",
            destination_name=destination_name,
            supports_multiple_statements=False,
            **settings,
        )
        yield FakeSnowflake(destination=destination, credentials=CREDENTIALS, db_path=db_path)


# --- opt-in: NUMBER(38,0) as wide as on Snowflake ------------------------------
# fakesnow's ``integer_precision`` transform turns an explicit NUMBER(38,0) into
# DuckDB's BIGINT (int64) so that its own results come back as ``int``; on
# Snowflake NUMBER(38,0) holds 38 digits. dlt declares the ``__v_decimal``
# variant columns (integers beyond 64 bits, README "Every value lands") as
# NUMBER(38,0), so the COPY fails with "Failed to cast decimal value
# 20000000000698922793 to type INT64": an emulator limit, not the product's.
# With this patch NUMBER(38,0) stays DECIMAL(38,0) (HUGEINT range, read back as
# ``Decimal``), and so does a bare NUMBER (sqlglot gives it the same (38,0));
# INT, SMALLINT and TINYINT still become BIGINT as fakesnow intends. Opt-in
# (not in PATCHES): only the value-fidelity tests load such integers, and the
# other tests keep fakesnow's int results.
def _integer_precision(original: Callable[..., Expr]) -> Callable[..., Expr]:
    def integer_precision(expression: Expr, *args: Any, **kwargs: Any) -> Expr:
        if (
            isinstance(expression, exp.DataType)
            and expression.this == exp.DataType.Type.DECIMAL
            and expression.expressions == fakesnow.transforms.transforms.NUMBER_38_0
        ):
            return expression
        return original(expression, *args, **kwargs)

    return integer_precision


@contextlib.contextmanager
def wide_numbers() -> Iterator[None]:
    """Inside a ``fakesnow_destination`` block: NUMBER(38,0) keeps 38 digits (see above)."""
    with mock.patch("fakesnow.transforms.integer_precision", _integer_precision(fakesnow.transforms.integer_precision)):
        yield
