"""A faithful local emulator of the Makini API (the contract: docs/makini-api.md).

    from makini_sandbox import Sandbox, SandboxControl, ENTITIES
    with Sandbox(seed=7, sizes={"purchase-orders": 1000}, connections=2) as sb:
        sb.base_url, sb.tokens, sb.connections, sb.control

Modules, one job each: entities (the entity table), clock (sandbox time and
the timestamp format), data (deterministic records), store (records + keyset
index), cursor (signed cursors), faults (fault injection, rate limiter),
latency (the delay of API responses), shapes (per-connection deployment
variety: type drift, v3 names, custom entities), state (connections and
control operations), webhooks (signed delivery with retries and injected
duplicates/reordering/delays), api (the public endpoints), control (the
control endpoints), server (HTTP), runner (`Sandbox`), client
(`SandboxControl`).
"""
from .client import SandboxControl, SandboxControlError
from .entities import ENTITIES, ENTITY_SPECS
from .runner import Sandbox

__all__ = ["ENTITIES", "ENTITY_SPECS", "Sandbox", "SandboxControl", "SandboxControlError"]
