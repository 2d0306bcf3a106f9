"""The control API (`/_sandbox/...`): what tests and benchmarks use to steer the sandbox.

Unauthenticated and never subject to injected faults, rate limits or latency; the
server only answers it from loopback addresses. JSON in, JSON out; errors use
the same envelope as the public API.

| method | path | body / query |
| --- | --- | --- |
| GET | /_sandbox/info | |
| POST | /_sandbox/mutate | connection_id, entity, update, insert, soft_delete, hard_delete, ids, seed, hold |
| GET | /_sandbox/truth | ?connection_id=&entity=&detail=1 |
| GET | /_sandbox/requests | ?reset=1 -> total, by_status, by_connection, by_connection_status, admission |
| POST / DELETE | /_sandbox/faults | FaultSettings fields / clears |
| POST | /_sandbox/connection-status | connection_id, status |
| POST | /_sandbox/total-count | connection_id, enabled |
| POST | /_sandbox/rate-limit | per_window, window_seconds (default 60), connection_id (optional), reset_header (optional bool: send X-RateLimit-Reset); or per_minute |
| POST | /_sandbox/latency | latency_ms, connection_id (optional) |
| POST | /_sandbox/clock | advance_seconds |
| POST | /_sandbox/reset | (regenerates all data from the seed) |
| POST / DELETE | /_sandbox/webhooks | WebhookSettings fields (url, secrets, time_scale, ...) / disables |
| GET | /_sandbox/webhooks | (delivery stats) |
| POST | /_sandbox/webhooks/flush | timeout (seconds; blocks until nothing is pending) |
| POST | /_sandbox/events | connection_id, type, data (emits one event) |
| GET | /_sandbox/records | ?connection_id=&entity= -> {"records": [...exactly as served, list order], "count"} |
| POST | /_sandbox/records | connection_id, entity, records (list of records as served), replace, hold |
| POST | /_sandbox/makini-sync | connection_id (publishes held changes: late visibility) |
| POST | /_sandbox/sync-status | connection_id, answer: bound, without_bound or error |

Rate limit and latency: without `connection_id` the call sets every
connection's value and drops the per-connection ones (a fresh plan); with
it, only that connection's. Both answer with what is now in force, as
`GET /_sandbox/info` does under `rate_limit` and `latency`. `per_minute: N` is
the older spelling of `per_window: N` with a 60 s window. `GET /_sandbox/requests`
counts per connection what the rate limiter admitted and refused under
`admission` (see `RequestCounter` in state.py).

`POST /_sandbox/records` bodies are parsed without loss (integers beyond 64
bits stay exact) and each record is served exactly as given, in the
connection's field names (a v3 connection's records carry `key`, `updatedAt`).
"""
from __future__ import annotations

from urllib.parse import parse_qs

import orjson

from .api import Response, error
from .clock import fmt_ms
from .faults import FaultSettings
from .state import ControlError, SandboxState
from .store import loads_exact
from .webhooks import WebhookSettings

PREFIX = "/_sandbox/"


def handle(state: SandboxState, method: str, path: str, query: str, body: bytes, request_id: str) -> Response:
    try:
        what = path[len(PREFIX):].strip("/")
        # injected records must keep every value exactly (orjson makes huge integers floats)
        args = (loads_exact(body) if what == "records" else orjson.loads(body)) if body else {}
        if not isinstance(args, dict):
            raise ControlError("INVALID_PARAMETER", "the request body must be a JSON object")
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        result = _dispatch(state, method, what, params, args)
    except ControlError as exc:
        return error(404 if exc.code == "NOT_FOUND" else 400, exc.code, str(exc), request_id)
    except (orjson.JSONDecodeError, TypeError, ValueError, KeyError) as exc:
        return error(400, "INVALID_PARAMETER", f"bad control request: {exc!r}", request_id)
    return Response(200, result if isinstance(result, bytes) else orjson.dumps(result), [])


def _flag(value) -> bool:
    return str(value).lower() in ("1", "true", "yes")


def _dispatch(state: SandboxState, method: str, what: str, params: dict, args: dict):
    if (method, what) == ("GET", "info"):
        return state.info()
    if (method, what) == ("POST", "mutate"):
        return state.mutate(
            args["connection_id"], args["entity"], update=float(args.get("update", 0.0)),
            insert=int(args.get("insert", 0)), soft_delete=float(args.get("soft_delete", 0.0)),
            hard_delete=float(args.get("hard_delete", 0.0)), ids=args.get("ids"), seed=args.get("seed"),
            hold=bool(args.get("hold", False)))
    if (method, what) == ("GET", "truth"):
        return state.store(params["connection_id"], params["entity"]).truth(_flag(params.get("detail", "0")))
    if (method, what) == ("GET", "requests"):
        return state.counter.snapshot(reset=_flag(params.get("reset", "0")))
    if what == "faults" and method in ("POST", "DELETE"):
        state.faults.configure(FaultSettings(**args) if method == "POST" else FaultSettings())
        return state.faults.describe()
    if (method, what) == ("POST", "connection-status"):
        state.set_status(args["connection_id"], args["status"])
        return {"id": args["connection_id"], "status": args["status"]}
    if (method, what) == ("POST", "total-count"):
        state.set_total_count(args["connection_id"], args["enabled"])
        return {"id": args["connection_id"], "total_count": bool(args["enabled"])}
    if (method, what) == ("POST", "rate-limit"):
        if "per_window" in args:
            return state.set_rate_limit(args["per_window"], float(args.get("window_seconds", 60.0)),
                                        args.get("connection_id"), args.get("reset_header"))
        return state.set_rate_limit(args["per_minute"], 60.0, args.get("connection_id"), reset_header=True)
    if (method, what) == ("POST", "latency"):
        return state.set_latency(float(args["latency_ms"]), args.get("connection_id"))
    if (method, what) == ("POST", "clock"):
        now = state.clock.advance(float(args["advance_seconds"]))
        return {"now": fmt_ms(now), "offset_seconds": state.clock.offset_ms / 1000}
    if what == "webhooks" and method in ("POST", "DELETE"):
        return state.webhooks.configure(WebhookSettings(**args) if method == "POST"
                                        else WebhookSettings(enabled=False))
    if (method, what) == ("GET", "webhooks"):
        return state.webhooks.stats()
    if (method, what) == ("POST", "webhooks/flush"):
        return state.webhooks.flush(float(args.get("timeout", 30.0)))
    if (method, what) == ("POST", "events"):
        return state.emit_event(args["connection_id"], args["type"], args.get("data"))
    if (method, what) == ("GET", "records"):
        raws = state.records(params["connection_id"], params["entity"])
        return b'{"records":[' + b",".join(raws) + b'],"count":%d}' % len(raws)
    if (method, what) == ("POST", "records"):
        return state.put_records(args["connection_id"], args["entity"], args["records"],
                                 replace=bool(args.get("replace", False)), hold=bool(args.get("hold", False)))
    if (method, what) == ("POST", "makini-sync"):
        return state.makini_sync(args["connection_id"])
    if (method, what) == ("POST", "sync-status"):
        state.set_sync_status_answer(args["connection_id"], args["answer"])
        return state.sync_status(args["connection_id"])
    if (method, what) == ("POST", "reset"):
        state.reset_data()
        return state.info()
    raise ControlError("NOT_FOUND", f"no control endpoint {method} {PREFIX}{what}")
