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

    def _call(self, method: str, path: str, *, params: dict | None = None, json: Any = None) -> Any:
        resp = self._http.request(method, path, params=params, json=json)
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
               seed: int | None = None) -> dict:
        return self._call("POST", "mutate", json={
            "connection_id": connection_id, "entity": entity, "update": update, "insert": insert,
            "soft_delete": soft_delete, "hard_delete": hard_delete, "ids": ids, "seed": seed})

    def truth(self, connection_id: str, entity: str, detail: bool = False) -> dict:
        return self._call("GET", "truth", params={"connection_id": connection_id, "entity": entity,
                                                  "detail": int(detail)})

    def requests_served(self, reset: bool = False) -> dict:
        return self._call("GET", "requests", params={"reset": int(reset)})

    def set_faults(self, *, seed: int = 0, rate_429: float = 0.0, rate_500: float = 0.0, rate_503: float = 0.0,
                   slow_rate: float = 0.0, slow_seconds: float = 0.0, drop_rate: float = 0.0,
                   retry_after: int = 1) -> dict:
        return self._call("POST", "faults", json={
            "seed": seed, "rate_429": rate_429, "rate_500": rate_500, "rate_503": rate_503,
            "slow_rate": slow_rate, "slow_seconds": slow_seconds, "drop_rate": drop_rate,
            "retry_after": retry_after})

    def clear_faults(self) -> dict:
        return self._call("DELETE", "faults")

    def set_connection_status(self, connection_id: str, status: str) -> dict:
        return self._call("POST", "connection-status", json={"connection_id": connection_id, "status": status})

    def set_rate_limit(self, per_minute: int) -> dict:
        return self._call("POST", "rate-limit", json={"per_minute": per_minute})

    def advance_clock(self, seconds: float) -> dict:
        return self._call("POST", "clock", json={"advance_seconds": seconds})

    def set_total_count(self, connection_id: str, enabled: bool) -> dict:
        return self._call("POST", "total-count", json={"connection_id": connection_id, "enabled": enabled})

    def reset(self) -> dict:
        """Regenerate all data from the seed (faults, rate limit and clock are kept)."""
        return self._call("POST", "reset")
