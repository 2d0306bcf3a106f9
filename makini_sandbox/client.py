"""`SandboxControl`: a thin httpx client for the control API (`/_sandbox/...`)."""
from __future__ import annotations

from typing import Any

import httpx


class SandboxControlError(RuntimeError):
    """The control API refused a call; the message carries its error code and text."""


class SandboxControl:
    def __init__(self, base_url: str, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url + "/_sandbox", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "SandboxControl":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, path: str, *, params: dict | None = None, json: Any = None,
              timeout: float | None = None) -> Any:
        extra = {"timeout": timeout} if timeout is not None else {}
        resp = self._http.request(method, path, params=params, json=json, **extra)
        if resp.status_code != 200:
            try:
                err = resp.json()["error"]
                detail = f"{err['code']}: {err['message']}"
            except Exception:  # not our envelope; show what came back
                detail = resp.text[:200]
            raise SandboxControlError(f"{method} /_sandbox/{path} failed with {resp.status_code}: {detail}")
        return resp.json()

    def info(self) -> dict:
        return self._call("GET", "info")

    def mutate(self, connection_id: str, entity: str, *, update: float = 0.0, insert: int = 0,
               soft_delete: float = 0.0, hard_delete: float = 0.0, ids: list[str] | None = None,
               seed: int | None = None, hold: bool = False) -> dict:
        """`hold`: the changes stay invisible until `makini_sync` (late visibility)."""
        return self._call("POST", "mutate", json={
            "connection_id": connection_id, "entity": entity, "update": update, "insert": insert,
            "soft_delete": soft_delete, "hard_delete": hard_delete, "ids": ids, "seed": seed, "hold": hold})

    def records(self, connection_id: str, entity: str) -> list[dict]:
        """The records of one connection and entity exactly as the list endpoint serves them
        now, in list order (updated_at, id); parsed without loss (huge integers stay exact)."""
        return self._call("GET", "records", params={"connection_id": connection_id, "entity": entity})["records"]

    def put_records(self, connection_id: str, entity: str, records: list[dict], *, replace: bool = False,
                    hold: bool = False) -> dict:
        """Serve `records` exactly as given (in the connection's field names: `key`/`updatedAt`
        on a v3 connection), replacing records with the same id; `replace=True` first removes
        every other record of that connection and entity. Returns {"created", "replaced",
        "removed" (ids), "count"}. Any JSON value is kept exactly (huge integers, any Unicode).
        `hold`: invisible, with the updated-at they carry, until `makini_sync` (late visibility)."""
        return self._call("POST", "records", json={"connection_id": connection_id, "entity": entity,
                                                   "records": records, "replace": replace, "hold": hold})

    def makini_sync(self, connection_id: str) -> dict:
        """Makini's scheduled sync of the connection: held changes become visible, and
        `/sync-status` moves its bound to now."""
        return self._call("POST", "makini-sync", json={"connection_id": connection_id})

    def set_sync_status_answer(self, connection_id: str, answer: str) -> dict:
        """`bound` (the contract), `without_bound` (no last_successful_sync_at) or `error` (500)."""
        return self._call("POST", "sync-status", json={"connection_id": connection_id, "answer": answer})

    def truth(self, connection_id: str, entity: str, detail: bool = False) -> dict:
        return self._call("GET", "truth", params={"connection_id": connection_id, "entity": entity,
                                                  "detail": int(detail)})

    def requests_served(self, reset: bool = False) -> dict:
        """API requests counted since the last reset: `total`, `by_status`, `by_connection`
        (endpoint -> requests), `by_connection_status` (status -> requests) and `admission`
        (connection id -> {"admitted", "refused"}: the rate limiter's verdicts; injected
        faults are in neither). See RequestCounter in makini_sandbox/state.py."""
        return self._call("GET", "requests", params={"reset": int(reset)})

    def set_faults(self, *, seed: int = 0, rate_429: float = 0.0, rate_500: float = 0.0, rate_503: float = 0.0,
                   slow_rate: float = 0.0, slow_seconds: float = 0.0, drop_rate: float = 0.0,
                   cut_rate: float = 0.0, retry_after: int = 1, outage_after: int = -1) -> dict:
        """``outage_after=N``: N more API requests are answered, then every one gets 503."""
        return self._call("POST", "faults", json={
            "seed": seed, "rate_429": rate_429, "rate_500": rate_500, "rate_503": rate_503,
            "slow_rate": slow_rate, "slow_seconds": slow_seconds, "drop_rate": drop_rate,
            "cut_rate": cut_rate, "retry_after": retry_after, "outage_after": outage_after})

    def clear_faults(self) -> dict:
        return self._call("DELETE", "faults")

    def set_connection_status(self, connection_id: str, status: str) -> dict:
        return self._call("POST", "connection-status", json={"connection_id": connection_id, "status": status})

    def set_rate_limit(self, per_window: int, window_seconds: float = 60.0,
                       connection_id: str | None = None, reset_header: bool | None = None) -> dict:
        """`per_window` requests per `window_seconds` (fixed windows on the sandbox clock).
        Without `connection_id`, for every connection: per-connection limits are dropped
        and every window restarts. With it, for that connection only (its window
        restarts). `set_rate_limit(n)` is n per minute, as it always was. Returns the
        limits in force: {"per_window", "window_seconds", "connections": {id: {...}}}.
        `reset_header=False`: answer without X-RateLimit-Reset, as servers that send
        only the contract's Limit and Remaining do (None: as it was)."""
        return self._call("POST", "rate-limit", json={"per_window": per_window, "window_seconds": window_seconds,
                                                      "connection_id": connection_id, "reset_header": reset_header})

    def set_latency(self, latency_ms: float, connection_id: str | None = None) -> dict:
        """Delay every API response (not control calls) by `latency_ms`. Without
        `connection_id`, for every connection (per-connection values are dropped); with
        it, for that connection only. Returns {"latency_ms", "connections": {id: ms}}."""
        return self._call("POST", "latency", json={"latency_ms": latency_ms, "connection_id": connection_id})

    def advance_clock(self, seconds: float) -> dict:
        return self._call("POST", "clock", json={"advance_seconds": seconds})

    def set_total_count(self, connection_id: str, enabled: bool) -> dict:
        return self._call("POST", "total-count", json={"connection_id": connection_id, "enabled": enabled})

    def reset(self) -> dict:
        """Regenerate all data from the seed (faults, rate limits, latency and clock are kept)."""
        return self._call("POST", "reset")

    # -- webhooks (see makini_sandbox/webhooks.py for the semantics) -------------------
    def configure_webhooks(self, url: str, secrets: list[str], *, time_scale: float = 1.0,
                           duplicate_rate: float = 0.0, reorder_window: int = 0, max_delay: float = 0.0,
                           seed: int = 0, enabled: bool = True, workers: int = 4,
                           timeout: float | None = None, reorder_hold: float = 30.0) -> dict:
        """Deliver every later mutation and lifecycle event to `url`, signed with each of
        `secrets` ("whsec_<base64>"). Starts afresh: stats reset, older undelivered events
        dropped. Returns the settings (secrets only counted)."""
        return self._call("POST", "webhooks", json={
            "url": url, "secrets": list(secrets), "time_scale": time_scale, "duplicate_rate": duplicate_rate,
            "reorder_window": reorder_window, "max_delay": max_delay, "seed": seed, "enabled": enabled,
            "workers": workers, "timeout": timeout, "reorder_hold": reorder_hold})

    def clear_webhooks(self) -> dict:
        """Stop delivering; pending events are dropped."""
        return self._call("DELETE", "webhooks")

    def webhook_stats(self) -> dict:
        return self._call("GET", "webhooks")

    def flush_webhooks(self, timeout: float = 30.0) -> dict:
        """Block until nothing is pending (events acknowledged or given up, duplicates
        sent) or `timeout` passes; returns the stats (check `pending`)."""
        return self._call("POST", "webhooks/flush", json={"timeout": timeout}, timeout=timeout + 30.0)

    def emit_event(self, connection_id: str, type: str, data: dict | None = None) -> dict:  # noqa: A002
        """Emit one event, e.g. `sync.completed`; returns {"id": "evt_..." or None when off, "type"}."""
        return self._call("POST", "events", json={"connection_id": connection_id, "type": type, "data": data})
