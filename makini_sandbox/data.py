"""Deterministic, realistic records for one connection.

Every value comes from `random.Random` instances seeded from (sandbox seed,
connection index, entity), so the same seed and sizes give the same records.
Absolute timestamps are relative to an anchor (the sandbox start, truncated to
the UTC day), so reruns on the same day are byte-identical.

Built for speed (100k purchase orders in a few seconds): local aliases,
`seq[int(r() * n)]` instead of `rng.choice`, no datetime objects.
"""
from __future__ import annotations

import hashlib
import random
from typing import Any, Iterator

from .clock import DAY_MS, fmt_date, fmt_ms
from .entities import ALL_ENTITY_SPECS

SYSTEMS = ("SAP", "Maximo", "NetSuite", "Dynamics 365", "Oracle EBS", "IFS")
PO_STATUSES = ("draft", "approved", "sent", "partially_received", "received", "cancelled")
_PO_STATUS_WEIGHTED = ("draft",) * 12 + ("approved",) * 20 + ("sent",) * 25 + \
    ("partially_received",) * 13 + ("received",) * 25 + ("cancelled",) * 5
_PO_NEXT = {"draft": "approved", "approved": "sent", "sent": "partially_received",
            "partially_received": "received"}
WO_STATUSES = ("open", "in_progress", "on_hold", "completed", "cancelled")
WO_PRIORITIES = ("low", "medium", "high", "urgent")
ASSET_STATUSES = ("operating", "standby", "under_maintenance", "decommissioned")
CURRENCIES = ("USD", "USD", "USD", "EUR", "EUR", "GBP", "CAD")
PAYMENT_TERMS = ("NET30", "NET45", "NET60", "NET15", "2/10 NET30", "DUE_ON_RECEIPT")
UOMS = ("EA", "EA", "EA", "BOX", "KG", "L", "M", "SET")
_COUNTED = frozenset(("EA", "BOX", "SET"))  # whole quantities; the others are measured
_ADDRESSES = (
    ("1200 Industrial Pkwy", "Houston", "77002", "US"), ("45 Harbor Rd", "Baltimore", "21230", "US"),
    ("880 Mill St", "Pittsburgh", "15222", "US"), ("Werkstrasse 12", "Stuttgart", "70173", "DE"),
    ("Hafenweg 3", "Hamburg", "20457", "DE"), ("Unit 7, Dockside", "Leeds", "LS1 4AP", "GB"),
    ("2 Rue des Forges", "Lyon", "69002", "FR"), ("300 Front St W", "Toronto", "M5V 3A8", "CA"),
    ("Calle Mayor 9", "Zaragoza", "50001", "ES"), ("Via Roma 40", "Turin", "10121", "IT"),
)
_NOUNS = ("Bearing", "Valve", "Gasket", "Pump Seal", "Filter Cartridge", "Motor", "Coupling",
          "Hydraulic Hose", "Pressure Gauge", "Circuit Breaker", "Conveyor Belt", "Impeller",
          "Lubricant", "Fastener Kit", "Sensor", "Drive Chain", "Control Relay", "O-Ring")
_ADJECTIVES = ("Stainless", "Heavy-Duty", "High-Temp", "Carbon Steel", "Brass", "Industrial",
               "Replacement", "Sealed", "Low-Noise", "Explosion-Proof")
_VENDOR_WORDS = ("Acme", "Northwind", "Apex", "Summit", "Pioneer", "Keystone", "Atlas", "Vertex",
                 "Harbor", "Ironclad", "Meridian", "Sterling", "Titan", "Orion", "Granite")
_VENDOR_KINDS = ("Industrial Supply", "Components", "Engineering", "Hydraulics", "Electric",
                 "Fasteners", "Tooling", "Logistics")
_ASSET_KINDS = ("Pump", "Compressor", "Conveyor", "Boiler", "Chiller", "Generator", "Mixer",
                "Press", "Crane", "Turbine")
_LOCATIONS = ("PLANT-01/WH-A", "PLANT-01/WH-B", "PLANT-02/WH-A", "PLANT-03/STORES",
              "DC-EAST", "DC-WEST", "SITE-NORTH/BAY-4")
_WO_TASKS = ("Replace worn seals", "Quarterly inspection", "Lubricate bearings", "Calibrate sensors",
             "Repair leak", "Vibration analysis", "Replace filter", "Tighten couplings")

# Per-connection custom field generators: the keys differ by connection, as they do
# between real customer systems.
_CUSTOM_FIELDS = (
    lambda r: {"cost_center": f"CC-{1000 + int(r() * 9000)}", "plant_code": f"PL{1 + int(r() * 20):02d}"},
    lambda r: {"project_code": f"PRJ-{int(r() * 100000):05d}",
               "buyer_email": f"buyer{int(r() * 40)}@example.com",
               "priority": ("low", "normal", "high")[int(r() * 3)]},
    lambda r: {"department": ("Maintenance", "Operations", "Procurement")[int(r() * 3)],
               "subsidiary": f"SUB-{1 + int(r() * 5)}", "approval_level": 1 + int(r() * 3)},
    lambda r: {"business_unit": f"BU{int(r() * 12):02d}", "budget_code": f"B-{int(r() * 1000):03d}",
               "is_capex": r() < 0.2},
    lambda r: {"org_id": 100 + int(r() * 50), "requisition_ref": f"REQ{int(r() * 10 ** 6):06d}"},
    lambda r: {"site": f"S{int(r() * 9)}", "contract_id": None if r() < 0.5 else f"C-{int(r() * 999)}",
               "region": ("EMEA", "AMER", "APAC")[int(r() * 3)]},
)

YEAR_MS = 365 * DAY_MS


def derive_seed(*parts: Any) -> int:
    """A stable 64-bit seed from parts (never Python's salted `hash`)."""
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


class ConnectionData:
    """Record factory for one connection: initial data, inserts and updates.

    Cross-entity references (vendor ids, asset ids, material codes) are drawn
    up front from their own random streams, so each entity's records can be
    generated independently and in any order.
    """

    def __init__(self, seed: int, index: int, sizes: dict[str, int], anchor_ms: int) -> None:
        self.index = index
        self.anchor_ms = anchor_ms
        # One stream per entity (custom ones included): adding an entity never changes another's records.
        self._rngs = {e: random.Random(derive_seed(seed, index, e)) for e in ALL_ENTITY_SPECS}
        self._custom = _CUSTOM_FIELDS[index % len(_CUSTOM_FIELDS)]
        self._seq = {e: 0 for e in ALL_ENTITY_SPECS}
        self._used_ids: dict[str, set[str]] = {e: set() for e in ALL_ENTITY_SPECS}
        ref = random.Random(derive_seed(seed, index, "refs"))
        self.vendor_ids = [self._new_id("vendors", ref) for _ in range(sizes["vendors"])]
        self.asset_ids = [self._new_id("assets", ref) for _ in range(sizes["assets"])]
        n_materials = max(40, sizes["inventory-items"] // 2)
        # (code, description, uom, out_of_stock): ~8% of materials have no stock anywhere.
        self.materials = [
            (f"MAT-{100000 + i * 7:06d}",
             f"{_ADJECTIVES[int(ref.random() * len(_ADJECTIVES))]} {_NOUNS[int(ref.random() * len(_NOUNS))]}",
             UOMS[int(ref.random() * len(UOMS))], ref.random() < 0.08 or i == 3)
            for i in range(n_materials)
        ]

    # -- ids and timestamps ------------------------------------------------------
    def _new_id(self, entity: str, rng: random.Random) -> str:
        prefix, used = ALL_ENTITY_SPECS[entity].id_prefix, self._used_ids[entity]
        while True:
            rid = f"{prefix}_{rng.getrandbits(48):012x}"
            if rid not in used:
                used.add(rid)
                return rid

    def _take_id(self, entity: str, seq: int, rng: random.Random) -> str:
        """Vendors and assets use the ids pre-drawn for references; others draw anew."""
        pool = self.vendor_ids if entity == "vendors" else self.asset_ids if entity == "assets" else None
        if pool is not None and seq < len(pool):
            return pool[seq]
        rid = self._new_id(entity, rng)
        if pool is not None:
            pool.append(rid)
        return rid

    def initial(self, entity: str, n: int) -> Iterator[dict]:
        """The initial records: updated_at spread over the year before the anchor,
        ~5% sharing a timestamp with their predecessor (bulk imports: ties are
        ordered by id), ~3% soft-deleted."""
        rng = self._rngs[entity]
        r = rng.random
        prev_ms = self.anchor_ms - YEAR_MS // 2
        for _ in range(n):
            upd = prev_ms if r() < 0.05 else self.anchor_ms - 1 - int(r() * YEAR_MS)
            prev_ms = upd
            created = upd - int(r() * 90 * DAY_MS)
            rec = self.make(entity, created, upd)
            if r() < 0.03:
                rec["deleted_at"] = rec["updated_at"]
            yield rec

    def make(self, entity: str, created_ms: int, updated_ms: int) -> dict:
        """A new record of `entity` (ids and numbers continue the sequence)."""
        rng = self._rngs[entity]
        seq = self._seq[entity]
        self._seq[entity] = seq + 1
        rid = self._take_id(entity, seq, rng)
        body = _MAKERS[entity](self, rng, seq, created_ms)
        rec = {"id": rid, **body, "custom_fields": self._custom(rng.random),
               "created_at": fmt_ms(created_ms), "updated_at": fmt_ms(updated_ms), "deleted_at": None}
        return rec

    # -- entity makers ------------------------------------------------------------
    def _address(self, r) -> dict:
        line1, city, postal, country = _ADDRESSES[int(r() * len(_ADDRESSES))]
        return {"line1": line1, "city": city, "postal_code": postal, "country": country}

    def _lines(self, rng: random.Random, n: int, order_ms: int, start: int = 1) -> tuple[list[dict], int]:
        """`n` line items numbered from `start` (x10, SAP style) and their total in cents."""
        r, mats, nm = rng.random, self.materials, len(self.materials)
        lines, total = [], 0
        for i in range(start, start + n):
            code, desc, uom, oos = mats[int(r() * nm)]
            qty = 1 + int(r() * 200) if uom in _COUNTED else round(0.5 + r() * 500, 1)
            price = 50 + int(r() * 250_000)
            amount = round(qty * price)
            total += amount
            lines.append({
                "line_number": i * 10, "material_code": code, "description": desc,
                "quantity": qty, "unit_of_measure": uom, "unit_price": f"{price // 100}.{price % 100:02d}",
                "amount": f"{amount // 100}.{amount % 100:02d}",
                "delivery_date": fmt_date(order_ms + (3 + int(r() * 60)) * DAY_MS),
                "stock_status": "out_of_stock" if oos else "in_stock",
            })
        return lines, total

    def _po(self, rng: random.Random, seq: int, created_ms: int) -> dict:
        r = rng.random
        status = PO_STATUSES[seq] if seq < len(PO_STATUSES) else _PO_STATUS_WEIGHTED[int(r() * 100)]
        if self.vendor_ids and seq % 97 != 13:
            vendor = self.vendor_ids[int(r() * len(self.vendor_ids))]
        else:  # the "invalid vendor reference" scenario: points at no vendor
            vendor = f"vnd_deadbeef{seq % 10000:04d}"
        lines, total = self._lines(rng, 1 + int(r() * 8), created_ms)
        required = created_ms + (7 + int(r() * 50)) * DAY_MS
        return {
            "order_number": f"PO-{4500000000 + seq}", "status": status, "vendor_id": vendor,
            "currency": CURRENCIES[int(r() * len(CURRENCIES))],
            "order_date": fmt_date(created_ms), "required_date": fmt_date(required),
            "delivery_date": None if status == "draft" else fmt_date(required + int((r() - 0.3) * 10) * DAY_MS),
            "payment_terms": PAYMENT_TERMS[int(r() * len(PAYMENT_TERMS))],
            "ship_to": self._address(r), "bill_to": self._address(r),
            "total_amount": money(total), "line_items": lines,
        }

    def _wo(self, rng: random.Random, seq: int, created_ms: int) -> dict:
        r = rng.random
        start = created_ms + int(r() * 30) * DAY_MS
        return {
            "number": f"WO-{100000 + seq}", "status": WO_STATUSES[int(r() * len(WO_STATUSES))],
            "priority": WO_PRIORITIES[int(r() * len(WO_PRIORITIES))],
            "description": f"{_WO_TASKS[int(r() * len(_WO_TASKS))]}",
            "asset_id": None if not self.asset_ids or r() < 0.1 else self.asset_ids[int(r() * len(self.asset_ids))],
            "scheduled_start": fmt_date(start), "scheduled_end": fmt_date(start + (1 + int(r() * 5)) * DAY_MS),
        }

    def _asset(self, rng: random.Random, seq: int, created_ms: int) -> dict:
        r = rng.random
        # The first ids and every ~6th are roots; the rest hang under an earlier asset.
        parent = None if seq < 3 or r() < 0.15 else self.asset_ids[int(r() * min(seq, len(self.asset_ids)))]
        kind = _ASSET_KINDS[int(r() * len(_ASSET_KINDS))]
        return {
            "name": f"{kind} {seq + 1}", "asset_number": f"A-{10000 + seq}", "parent_id": parent,
            "location": _LOCATIONS[int(r() * len(_LOCATIONS))],
            "status": ASSET_STATUSES[int(r() * len(ASSET_STATUSES))],
            "serial_number": f"SN{rng.getrandbits(32):08X}",
        }

    def _inventory(self, rng: random.Random, seq: int, created_ms: int) -> dict:
        r = rng.random
        code, desc, uom, oos = self.materials[seq % len(self.materials)]
        return {
            "material_code": code, "description": desc,
            "location": _LOCATIONS[(seq // len(self.materials) + int(r() * 2)) % len(_LOCATIONS)],
            "quantity_on_hand": 0 if oos or r() < 0.05 else 1 + int(r() * 2000),
            "unit_of_measure": uom, "reorder_point": 5 + int(r() * 100),
        }

    def _vendor(self, rng: random.Random, seq: int, created_ms: int) -> dict:
        r = rng.random
        name = f"{_VENDOR_WORDS[int(r() * len(_VENDOR_WORDS))]} {_VENDOR_KINDS[int(r() * len(_VENDOR_KINDS))]}"
        return {
            "name": name, "vendor_number": f"V{200000 + seq}",
            "email": f"orders{seq}@{name.split()[0].lower()}-supply.example.com",
            "country": _ADDRESSES[int(r() * len(_ADDRESSES))][3],
            "payment_terms": PAYMENT_TERMS[int(r() * len(PAYMENT_TERMS))],
        }

    def _plan(self, rng: random.Random, seq: int, created_ms: int) -> dict:
        """A maintenance plan (the custom entity of makini_sandbox/shapes.py): a nested task list."""
        r = rng.random
        kind = _ASSET_KINDS[int(r() * len(_ASSET_KINDS))]
        tasks = [{"task_number": (i + 1) * 10, "description": _WO_TASKS[int(r() * len(_WO_TASKS))],
                  "duration_minutes": 15 * (1 + int(r() * 16)), "requires_shutdown": r() < 0.3}
                 for i in range(1 + int(r() * 5))]
        return {
            "plan_number": f"MP-{1000 + seq}", "name": f"{kind} preventive plan {seq + 1}",
            "asset_id": self.asset_ids[int(r() * len(self.asset_ids))] if self.asset_ids else None,
            "frequency": {"interval": 1 + int(r() * 12), "unit": ("day", "week", "month")[int(r() * 3)]},
            "next_due_date": fmt_date(created_ms + (1 + int(r() * 90)) * DAY_MS),
            "active": r() < 0.85, "estimated_hours": round(0.5 + r() * 40, 1), "tasks": tasks,
        }

    # -- updates ------------------------------------------------------------------
    def update(self, entity: str, rec: dict, rng: random.Random, now_ms: int) -> None:
        """Change some business fields of `rec` in place (timestamps are the store's job)."""
        r = rng.random
        if entity == "purchase-orders":
            if rec["status"] in _PO_NEXT and r() < 0.6:
                rec["status"] = _PO_NEXT[rec["status"]]
            elif r() < 0.1:
                rec["status"] = "cancelled"
            lines = rec["line_items"]
            if r() < 0.35:  # change the number of lines
                if len(lines) > 1 and r() < 0.5:
                    lines.pop(int(r() * len(lines)))
                elif len(lines) < 8:
                    start = max(ln["line_number"] for ln in lines) // 10 + 1
                    lines.extend(self._lines(rng, 1, now_ms, start)[0])
            ln = lines[int(r() * len(lines))]
            if isinstance(ln["quantity"], int):
                ln["quantity"] = 1 + int(r() * 200)
            else:
                ln["quantity"] = round(0.5 + r() * 500, 1)
            ln["amount"] = money(round(ln["quantity"] * _cents(ln["unit_price"])))
            ln["delivery_date"] = fmt_date(now_ms + (3 + int(r() * 60)) * DAY_MS)
            rec["total_amount"] = _total(lines)
        elif entity == "work-orders":
            rec["status"] = WO_STATUSES[int(r() * len(WO_STATUSES))]
            rec["priority"] = WO_PRIORITIES[int(r() * len(WO_PRIORITIES))]
        elif entity == "assets":
            rec["status"] = ASSET_STATUSES[int(r() * len(ASSET_STATUSES))]
            rec["location"] = _LOCATIONS[int(r() * len(_LOCATIONS))]
        elif entity == "inventory-items":
            rec["quantity_on_hand"] = 0 if r() < 0.1 else 1 + int(r() * 2000)
        elif entity == "vendors":
            rec["payment_terms"] = PAYMENT_TERMS[int(r() * len(PAYMENT_TERMS))]
        elif entity == "maintenance-plans":
            rec["active"] = r() < 0.85
            rec["next_due_date"] = fmt_date(now_ms + (1 + int(r() * 90)) * DAY_MS)
            task = rec["tasks"][int(r() * len(rec["tasks"]))]
            task["duration_minutes"] = 15 * (1 + int(r() * 16))
        rec["custom_fields"] = self._custom(r)


def _cents(decimal: str) -> int:
    whole, _, frac = decimal.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def _total(lines: list[dict]) -> str:
    return money(sum(_cents(ln["amount"]) for ln in lines))


_MAKERS = {
    "purchase-orders": ConnectionData._po, "work-orders": ConnectionData._wo,
    "assets": ConnectionData._asset, "inventory-items": ConnectionData._inventory,
    "vendors": ConnectionData._vendor, "maintenance-plans": ConnectionData._plan,
}
