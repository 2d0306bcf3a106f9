"""HTTP for one Makini connection: dlt's REST client, Makini's error taxonomy,
and a retry policy the contract asks for.

dlt's ``RESTClient`` does the paging (with ``MakiniCursorPaginator``) and the
bearer auth. Retries are a tenacity policy wrapped around the session's
``send``, written here rather than taken from dlt's ``Client`` because the
contract asks for two things dlt's policy lacks: jitter on 5xx backoff, and a
bound on total time rather than on attempts (a 429 storm must not exhaust a
handful of attempts in seconds, and a dead server must not hold cron forever).
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import random
from dataclasses import dataclass, replace
from typing import Any, Optional, Union

import msgspec
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import requests
from urllib.parse import urlsplit
from dlt.sources.helpers.requests.session import Session
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.auth import BearerTokenAuth
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_delay
from tenacity.stop import stop_base

from .errors import (
    MakiniError,
    RateLimited,
    RetriableError,
    RetriesExhausted,
    error_for_status,
)
from . import cancellation, dlt_seam, exact_json, lifted_read
from .body_page import BodyPage, envelope, page_records, parsed_body
from .breaker import Breaker
from .pacing import Pacer
from .column_kinds import ARROW_CAST_ERRORS
from .records import items_print_back, json_text, nested_lists_print_back, prints_back
from .settings import JSON_FIELDS

logger = logging.getLogger(__name__)

TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying a request that failed in a retriable way."""

    budget_seconds: float = 300.0  # total time one request may spend retrying
    base_backoff: float = 0.5  # first 5xx backoff, doubled each attempt
    max_backoff: float = 30.0  # cap of one 5xx backoff
    max_retry_after: float = 120.0  # cap on a server-requested wait
    timeout_seconds: float = 60.0  # one request's connect/read timeout

    def wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited):
            return min(max(exc.retry_after, 0.0), self.max_retry_after)
        # full jitter: uniform over [0, base * 2^attempt], capped
        ceiling = min(self.max_backoff, self.base_backoff * 2 ** (state.attempt_number - 1))
        return random.uniform(0, ceiling)


def response_body(response: requests.Response) -> Any:
    """The response's JSON, parsed with orjson, or with the standard library when it
    holds integers too long for orjson (which would round them to floats)."""
    return parsed_body(response.content, response.headers.get("X-Request-Id"), response.status_code)


@dataclass(frozen=True)
class Page:
    """One list page: its records (an Arrow table when Arrow's JSON reader parsed
    it, else the list orjson parsed, or the body to parse later: ``MakiniClient.bodies_kept``)
    and the paging fields of its body."""

    records: Union[pa.Table, list, BodyPage]
    next_cursor: Any
    total_count: Any
    path: str = "orjson"  # how it was parsed: "arrow", "arrow+orjson" (JSON fields from orjson), "orjson"

    @property
    def arrow(self) -> bool:
        return isinstance(self.records, pa.Table)


class PageSchemas:
    """The last page's schema per list path, given to Arrow's JSON reader for the next page.

    Arrow's reader infers a timestamp from any string that looks like one
    (``2024-02-28`` becomes midnight, ``2024-02-28 15:31:43`` a zoneless time)
    and then cannot give the string back. A page whose inferred schema holds a
    timestamp is read again with those fields declared as strings; the walk's
    next page is read with that schema at once (one parse, not two), and falls
    back to inference when it does not match (a field changed type).
    """

    def __init__(self) -> None:
        self._schemas: dict[str, pa.Schema] = {}
        # per path, the array fields that become child tables (the walk says which);
        # every other array is stored as the JSON text the API sent
        self.child_fields: dict[str, frozenset] = {}
        # per path, the key and version fields, which a lifted read never lifts; a path is read
        # lifted only once the walk gave them (a document store's walk does not: it keeps the
        # records as sent, which Arrow's typing of them would change)
        self.key_fields: dict[str, frozenset] = {}
        self._lift_plans: dict[str, lifted_read.LiftPlan] = {}

    def planned(self, path: str) -> bool:
        """Whether the path's pages are read with a lift plan (``read_lifted``)."""
        return path in self._lift_plans

    def read_lifted(self, path: str, content: bytes) -> Optional[pa.Table]:
        """A page Arrow refused (fields that drift in type) read column-wise with the
        path's lift plan, learned again from this page when it does not fit
        (``lifted_read.py``); None when it cannot be read that way."""
        if path not in self.key_fields:
            return None
        plan = self._lift_plans.get(path)
        if plan is not None:
            table = lifted_read.read(content, plan)
            if table is not None:
                return table
        plan = lifted_read.learn(content, self.child_fields.get(path, frozenset()), self.key_fields[path],
                                 _read_typed)
        if plan is None:
            self._lift_plans.pop(path, None)
            return None
        self._lift_plans[path] = plan
        return lifted_read.read(content, plan)

    def read(self, path: str, content: bytes) -> pa.Table:
        hint = self._schemas.get(path)
        table = None
        if hint is not None:
            with contextlib.suppress(*ARROW_CAST_ERRORS):
                table = _read_json(content, hint)
        if table is None or _has_timestamps(table.schema):
            table = _read_typed(content)
        hint = _without_nulls(table.schema)
        if hint is not None:
            self._schemas[path] = hint
        return table




def _read_typed(content: bytes) -> pa.Table:
    """The body as Arrow infers it, with text that looks like a timestamp kept as text."""
    table = _read_json(content)
    if _has_timestamps(table.schema):
        table = _read_json(content, _strings_for_timestamps(table.schema))
    return table


def _read_json(content: bytes, schema: Optional[pa.Schema] = None) -> pa.Table:
    parse = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer") if schema else None
    return pa_json.read_json(
        io.BytesIO(content), read_options=pa_json.ReadOptions(block_size=len(content) + 1), parse_options=parse
    )


def _has_timestamps(kind: Any) -> bool:
    if isinstance(kind, pa.Schema):
        return any(_has_timestamps(f.type) for f in kind)
    if pa.types.is_timestamp(kind):
        return True
    if pa.types.is_struct(kind):
        return any(_has_timestamps(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _has_timestamps(kind.value_type)
    return False


def _retyped(kind: Any, leaf: Any) -> Any:
    """``kind`` with every leaf type replaced by ``leaf(type)`` (None drops the field)."""
    if isinstance(kind, pa.Schema):
        fields = [f.with_type(t) for f in kind if (t := _retyped(f.type, leaf)) is not None]
        return pa.schema(fields) if fields else None
    if pa.types.is_struct(kind):
        fields = [kind.field(i) for i in range(kind.num_fields)]
        fields = [f.with_type(t) for f in fields if (t := _retyped(f.type, leaf)) is not None]
        return pa.struct(fields) if fields else None
    if pa.types.is_list(kind):
        inner = _retyped(kind.value_type, leaf)
        return pa.list_(inner) if inner is not None else None
    return leaf(kind)


def _strings_for_timestamps(schema: pa.Schema) -> pa.Schema:
    return _retyped(schema, lambda t: pa.string() if pa.types.is_timestamp(t) else t)


def _without_nulls(schema: pa.Schema) -> Optional[pa.Schema]:
    """The schema without fields no record had a value for, so the next page infers them."""
    return _retyped(schema, lambda t: None if pa.types.is_null(t) else t)


def _may_round_integers(values: pa.Array) -> bool:
    """Whether Arrow read a number so large that it may have been an integer
    rounded to a double (the page then takes the exact path)."""
    kind = values.type
    if pa.types.is_floating(kind):
        largest = pc.max(pc.abs(values)).as_py()
        return largest is not None and largest >= 2.0**53
    if pa.types.is_struct(kind):
        return any(_may_round_integers(values.field(i)) for i in range(kind.num_fields))
    if pa.types.is_list(kind):
        return _may_round_integers(values.flatten())
    return False


def arrow_page(response: requests.Response, schemas: PageSchemas) -> Optional[Page]:
    """Parse a list page with Arrow's JSON reader, or None to use the checked path.

    The reader parses and types the page in C++ with the GIL released, faster
    than orjson plus building Arrow from Python objects. Anything
    unusual (a shape it cannot type, an unexpected body) returns None and the
    page goes through orjson and the record-by-record checks instead.
    """
    content = response.content
    if not content.startswith(b"{") or b"\n" in content:
        return None
    url = response.request.url if response.request is not None else None
    path = urlsplit(url).path if isinstance(url, str) else ""
    child_fields = schemas.child_fields.get(path, frozenset())
    planned = schemas.planned(path)
    if planned:  # the walk's pages drift: Arrow alone would refuse this one too
        page = _lifted_page(response, schemas, path, child_fields)
        if page is not None:
            return page
    try:
        return _arrow_page(response, schemas.read(path, content), child_fields)
    except pa.ArrowException:  # any shape Arrow cannot read or take apart (some it fails on inside)
        pass
    return None if planned else _lifted_page(response, schemas, path, child_fields)


def _lifted_page(response: requests.Response, schemas: PageSchemas, path: str,
                 child_fields: frozenset) -> Optional[Page]:
    try:
        table = schemas.read_lifted(path, response.content)
        page = None if table is None else _arrow_page(response, table, child_fields)
    except pa.ArrowException:
        return None
    return None if page is None else replace(page, path=f"{page.path}+lift")


def _arrow_page(response: requests.Response, table: pa.Table, child_fields: frozenset) -> Optional[Page]:
    if table.num_rows != 1 or "data" not in table.column_names:
        return None
    data = table["data"].combine_chunks()
    if not pa.types.is_list(data.type) or not pa.types.is_struct(data.type.value_type):
        return None
    cursor = table["next_cursor"][0].as_py() if "next_cursor" in table.column_names else None
    total = table["total_count"][0].as_py() if "total_count" in table.column_names else None
    if (cursor is not None and not isinstance(cursor, str)) or (total is not None and not isinstance(total, int)):
        return None
    records = pa.Table.from_struct_array(pc.list_flatten(data))
    if _may_round_integers(pc.list_flatten(data)):
        return None
    unfaithful = []
    for name in records.column_names:
        values = records[name].combine_chunks()
        if name in child_fields:
            if not items_print_back(values):
                return None  # the orjson path keeps the items' arrays as sent
            continue
        if name in JSON_FIELDS or pa.types.is_list(values.type):
            if not prints_back(values):
                unfaithful.append(name)  # its JSON text comes from orjson
        elif not nested_lists_print_back(values):
            return None  # an array inside an object that Arrow cannot print back: the orjson path
    if unfaithful:
        records = _as_sent(records, unfaithful, response)
    return Page(records, cursor, total, "arrow+orjson" if unfaithful else "arrow")


def _as_sent(records: pa.Table, names: list[str], response: requests.Response) -> pa.Table:
    """Free-form JSON fields Arrow cannot print back as sent, as the JSON text the
    API sent (the other columns stay Arrow's).

    msgspec lifts each such field's raw text out of the body without building
    the rest of the page, and only that text is parsed and printed the way
    every other path prints JSON (``records.json_text``), so a value's stored
    text never depends on the path its page took. Parsing the whole body with
    orjson instead took most of a sync's time on the ``custom_nulls`` shape
    (benchmarks/sync_benchmark.py)."""
    try:
        columns = _lifted_columns(names, response.content)
    except ValueError:  # a body msgspec takes otherwise than Arrow did, or bad UTF-8 inside a field
        columns = None
    if columns is None:  # orjson reads the whole body
        parsed = response_body(response)["data"]
        columns = [[None if (v := r.get(name)) is None else json_text(v) for r in parsed] for name in names]
    for name, values in zip(names, columns, strict=True):
        records = records.set_column(records.schema.get_field_index(name), name, pa.array(values, pa.string()))
    return records


@functools.lru_cache(maxsize=64)
def _raw_fields_decoder(names: tuple[str, ...]) -> Optional[msgspec.json.Decoder]:
    """A decoder of ``{"data": [...]}`` keeping only ``names`` of each record, as raw JSON
    text; None when a name is one msgspec refuses (quotes, backslashes, control characters)."""
    fields = [(f"f{index}", msgspec.Raw, _ABSENT) for index in range(len(names))]
    try:
        record = msgspec.defstruct("RawFields", fields, rename={f"f{i}": name for i, name in enumerate(names)})
    except ValueError:
        return None
    return msgspec.json.Decoder(msgspec.defstruct("RawPage", [("data", list[record])]))  # type: ignore[valid-type]


_ABSENT = msgspec.Raw(b"null")  # a record without the field: null, as for JSON null


def _lifted_columns(names: list[str], body: bytes) -> Optional[list[list[Optional[str]]]]:
    """Each field's canonical JSON text per record; None when a name cannot be a msgspec field."""
    decoder = _raw_fields_decoder(tuple(names))
    if decoder is None:
        return None
    data = decoder.decode(body).data
    return [[_printed(getattr(r, f"f{index}")) for r in data] for index in range(len(names))]


def _printed(raw: msgspec.Raw) -> Optional[str]:
    value = exact_json.loads(memoryview(raw))
    return None if value is None else json_text(value)


def raise_for_makini_error(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """A requests response hook: turn an error response into a typed MakiniError."""
    status = response.status_code
    if status < 400:
        return
    request_id = response.headers.get("X-Request-Id")
    code, message = None, response.reason or "error"
    try:
        envelope = orjson.loads(response.content).get("error") or {}
        code = envelope.get("code") or None
        message = envelope.get("message") or message
        request_id = envelope.get("request_id") or request_id
    except (orjson.JSONDecodeError, AttributeError):
        pass
    cls = error_for_status(status, code)
    kwargs = dict(request_id=request_id, status=status, code=code)
    if cls is RateLimited:
        raise RateLimited(str(message), retry_after=_retry_after(response), **kwargs)
    raise cls(str(message), **kwargs)


def _retry_after(response: requests.Response) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        return float(value)
    except ValueError:
        return 1.0


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    request_id = getattr(exc, "request_id", None)
    logger.warning(
        "retrying after %s (attempt %d, request id %s), waiting %.2fs",
        type(exc).__name__,
        state.attempt_number,
        request_id,
        state.next_action.sleep if state.next_action else 0.0,
    )


def make_session(policy: RetryPolicy, budget_seconds: Optional[float] = None, pacer: Optional[Pacer] = None,
                 breaker: Optional[Breaker] = None) -> Session:
    """A requests session whose ``send`` retries per ``policy``, for
    ``budget_seconds`` (default: the policy's budget), each attempt paced by
    the connection's ``pacer``; retrying stops once the connection's
    ``breaker`` trips or the walk is cancelled."""
    session = Session(timeout=policy.timeout_seconds, raise_for_status=False)
    send = reading_whole_body(session.send)
    if pacer is not None:
        send = paced(send, pacer)
    budget = policy.budget_seconds if budget_seconds is None else budget_seconds
    session.send = _retrying(policy, budget, breaker).wraps(send)  # type: ignore[method-assign]
    return session


BRIEF_BUDGET_SECONDS = 20.0


class _stop_when_pointless(stop_base):
    """Retrying ends when the walk was cancelled or another walk tripped the connection's breaker."""

    def __init__(self, breaker: Optional[Breaker]) -> None:
        self.breaker = breaker

    def __call__(self, retry_state: RetryCallState) -> bool:
        return cancellation.cancelled() or (self.breaker is not None and self.breaker.open)


def _retrying(policy: RetryPolicy, budget_seconds: float, breaker: Optional[Breaker] = None) -> Retrying:
    return Retrying(
        retry=retry_if_exception_type((RetriableError, *TRANSPORT_ERRORS)),
        wait=policy.wait,
        stop=stop_after_delay(budget_seconds) | _stop_when_pointless(breaker),
        sleep=cancellation.sleep,
        before_sleep=_log_retry,
        reraise=True,
    )


def paced(send: Any, pacer: Pacer) -> Any:
    """``send`` that waits for the connection's rate budget and tells it what came back."""

    def send_paced(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        pacer.before_request()
        try:
            response = send(request, **kwargs)
        except RateLimited as exc:  # raised by the response hook, inside send: its 429 tells the pacer
            pacer.after_response(429, {"Retry-After": str(exc.retry_after)})
            raise
        except BaseException:
            pacer.after_response(0, {})
            raise
        pacer.after_response(response.status_code, response.headers)
        return response

    return send_paced


BODY_CHUNK_BYTES = 1 << 20


def reading_whole_body(send: Any) -> Any:
    """``send`` that reads the body in chunks of 1 MiB rather than requests' 10 KiB.

    The fetch thread shares the GIL with the thread converting pages: each
    chunk read gives the GIL up and waits to get it back, so small chunks make
    a page's read several times slower while the converter runs. Reading happens inside the
    retried call, so a body cut short is retried like any transport error.
    """

    def send_reading_whole_body(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = send(request, **{**kwargs, "stream": True})
        if dlt_seam.body_unread(response):
            dlt_seam.keep_body(response, b"".join(response.iter_content(BODY_CHUNK_BYTES)))
        return response

    return send_reading_whole_body


class MakiniClient(RESTClient):
    """dlt's REST client for one connection, parsing each page once with orjson."""

    def __init__(self, base_url: str, token: str, policy: RetryPolicy = RetryPolicy(),
                 breaker: Optional[Breaker] = None, pacer: Optional[Pacer] = None) -> None:
        self.pacer = pacer if pacer is not None else Pacer()  # the connection's rate budget, for both sessions
        super().__init__(
            base_url=base_url,
            auth=BearerTokenAuth(token=token),
            session=make_session(policy, pacer=self.pacer, breaker=breaker),
            data_selector="data",
        )
        self.page_schemas = PageSchemas()
        # a page Arrow's reader refuses comes back as its body (body_page.py), parsed where the walk converts it
        self.bodies_kept = False
        # status reads that may fall back (completeness.py) retry for a short while only
        self.brief = RESTClient(base_url=base_url, auth=self.auth, data_selector="data",
                                session=make_session(policy, min(policy.budget_seconds, BRIEF_BUDGET_SECONDS),
                                                     self.pacer, breaker))

    def extract_response(self, response: requests.Response, data_selector: Any) -> list:
        """The page as one ``Page`` item, which the paginator reads its cursor from."""
        page = arrow_page(response, self.page_schemas)
        if page is not None:
            return [page]
        request_id = response.headers.get("X-Request-Id")
        if self.bodies_kept and (paging := envelope(response.content)) is not None:
            data, cursor, total = paging
            return [Page(BodyPage(data, request_id, response.status_code), cursor, total)]
        body = response_body(response)
        return [Page(page_records(body, request_id, response.status_code), body.get("next_cursor"),
                     body.get("total_count"))]

    def get_json(self, path: str, brief: bool = False) -> Any:
        """GET one non-paged resource (the status endpoints); ``brief`` retries for
        ``BRIEF_BUDGET_SECONDS`` at most (a caller that has a fallback)."""
        client = self.brief if brief else self
        return response_body(client.get(path, hooks={"response": [raise_for_makini_error]}))


def located(exc: BaseException, connection: str, entity: str) -> MakiniError:
    """Any error from a request, as a fatal MakiniError naming connection and entity.

    Retries happen inside the session, so a retriable error or a transport
    error that reaches here has outlived the retry budget.
    """
    if isinstance(exc, RetriableError):
        exc = RetriesExhausted(
            f"still failing after retries: {exc.detail}",
            request_id=exc.request_id,
            status=exc.status,
            code=exc.code,
        )
    elif isinstance(exc, TRANSPORT_ERRORS):
        exc = RetriesExhausted(f"{type(exc).__name__} talking to the API, after retries")
    elif not isinstance(exc, MakiniError):
        logger.debug("unexpected error", exc_info=exc)
        exc = MakiniError(f"unexpected {type(exc).__name__} while syncing: {exc}")
    return exc.located(connection, entity)
