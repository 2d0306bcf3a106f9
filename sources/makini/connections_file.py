"""A fleet's connections in one file, their tokens in secrets.

Hundreds of tokens do not fit one ``SOURCES__MAKINI__API_TOKEN`` list. A
connections file names each connection once, with what differs between them::

    # connections.toml  (python -m pipelines.sync --connections connections.toml)
    [defaults]                          # optional: for every connection below
    rate_limit = "600/min"

    [connections.hamburg]               # letters, digits and _: the name in logs and the summary
    label = "Hamburg plant (SAP)"       # optional: a tenant label, shown beside the id
    entities = ["purchase_orders", "vendors"]   # optional: only these (default: all)
    rate_limit = "120/min"              # optional: the connection's plan, "N/min" or "N/5s"
    token_secret = "hamburg_sap"        # optional: the secret's name (default: the connection's name)

    [connections.hamburg.fields.purchase_orders]  # optional: this deployment's field names
    primary_key = "key"                 # (the keys of sources.makini.connections.<id>.entities.<table>)
    updated_at = "updatedAt"

Tokens stay in secrets: ``sources.makini.tokens.<token_secret>``, that is
``[sources.makini.tokens] hamburg_sap = "..."`` in ``.dlt/secrets.toml`` or
env ``SOURCES__MAKINI__TOKENS__HAMBURG_SAP``. A token written in the file is
refused. Connection ids still come from ``GET /api/v1/connection``. Every
entry is checked before any request; a bad one fails with one line naming
the entry and what to write.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import dlt

from .entity_config import load_registry
from .errors import ConfigurationError
from .pacing import RateBudget

FILE_KEY = "sources.makini.connections_file"
TOKENS_KEY = "sources.makini.tokens"
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
ENTRY_KEYS = ("label", "entities", "rate_limit", "token_secret", "fields")


@dataclass(frozen=True)
class ConnectionEntry:
    """One configured connection: its token and what is its own."""

    name: str
    token: str = field(repr=False)
    label: Optional[str] = None
    entities: Optional[tuple[str, ...]] = None  # tables to sync; None: every entity
    rate_budget: Optional[RateBudget] = None
    fields: dict = field(default_factory=dict)  # table -> field names (entity_config's per-connection keys)

    @property
    def shown_as(self) -> str:
        return f"{self.name} ({self.label})" if self.label else self.name


def read_connections_file(path: str | Path, secrets: Any = None) -> list[ConnectionEntry]:
    """The entries of a connections file, each with its token from secrets."""
    where = f"connections file {path}"
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"{where} does not exist; give the path of a TOML file "
                                 "(see sources/makini/connections_file.py for its layout)") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{where} is not readable TOML: {exc}") from None
    unknown = set(document) - {"defaults", "connections"}
    if unknown:
        raise ConfigurationError(f"{where}: unknown table(s) {sorted(unknown)}; "
                                 "write [defaults] and [connections.<name>] only")
    defaults = _table(document.get("defaults", {}), f"{where}, [defaults]")
    _only(defaults, tuple(k for k in ENTRY_KEYS if k not in ("token_secret", "fields")), f"{where}, [defaults]")
    connections = _table(document.get("connections"), f"{where}, [connections]")
    if not connections:
        raise ConfigurationError(f"{where} lists no connection; add one as [connections.<name>]")
    secrets = secrets if secrets is not None else dlt.secrets
    return [_entry(name, {**defaults, **_table(body, f"{where}, [connections.{name}]")},
                   f"{where}, [connections.{name}]", secrets)
            for name, body in connections.items()]


def _entry(name: str, body: dict, where: str, secrets: Any) -> ConnectionEntry:
    if not NAME.match(name):
        raise ConfigurationError(f"{where}: a connection's name is a letter, then letters, digits or _ "
                                 "(it names its secret, an env variable part)")
    if "token" in body or "api_token" in body:
        raise ConfigurationError(
            f"{where}: tokens stay in secrets, not in this file; remove it and set "
            f"[sources.makini.tokens] {body.get('token_secret', name)} = \"...\" in .dlt/secrets.toml "
            f"or env SOURCES__MAKINI__TOKENS__{str(body.get('token_secret', name)).upper()}")
    _only(body, ENTRY_KEYS, where)
    secret = body.get("token_secret", name)
    if not isinstance(secret, str) or not NAME.match(secret):
        raise ConfigurationError(f"{where}: token_secret must be a name of letters, digits and _")
    token = secrets.get(f"{TOKENS_KEY}.{secret}")
    if not isinstance(token, str) or not token.strip():
        raise ConfigurationError(
            f"{where}: no token in secrets; set [sources.makini.tokens] {secret} = \"...\" in "
            f".dlt/secrets.toml or env SOURCES__MAKINI__TOKENS__{secret.upper()}")
    label = body.get("label")
    if label is not None and not isinstance(label, str):
        raise ConfigurationError(f"{where}: label must be text")
    entities = body.get("entities")
    if entities is not None:
        if not isinstance(entities, list) or not entities or not all(isinstance(e, str) for e in entities):
            raise ConfigurationError(f'{where}: entities must be a list of tables, e.g. ["purchase_orders"]')
        try:
            entities = tuple(e.table for e in load_registry().resolve(entities))
        except ConfigurationError as exc:
            raise ConfigurationError(f"{where}: {exc}") from None
    budget = RateBudget.parse(body["rate_limit"], where) if "rate_limit" in body else None
    fields = _table(body.get("fields", {}), f"{where}, fields")
    if fields:
        try:  # the same checks as dlt config's per-connection field names, before any request
            load_registry(file_fields={name: fields})
        except ConfigurationError as exc:
            raise ConfigurationError(f"{where}, fields: {exc}") from None
    return ConnectionEntry(name, token.strip(), label, entities, budget, dict(fields))


def _table(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where} must be a table (key = value lines under a [header])")
    return value


def _only(body: dict, allowed: tuple, where: str) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ConfigurationError(f"{where}: unknown key(s) {unknown}; the keys are {', '.join(allowed)}")


def configured_file(explicit: Optional[str] = None) -> Optional[str]:
    """The connections file: ``explicit`` (``--connections``), else dlt config's, else none."""
    if explicit:
        return explicit
    value: Any = dlt.config.get(FILE_KEY)
    return str(value) if value else None
