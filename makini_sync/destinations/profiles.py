"""Destination profiles: named settings in ``destinations.toml``, secrets elsewhere."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import dlt
from dlt.common.destination import Destination, TLoaderFileFormat

from sources.makini import dlt_seam
from sources.makini.dlt_seam import own_duckdb_connection
from sources.makini.errors import ConfigurationError

from makini_sync.run.load_errors import quiet_dlt_tracebacks
from makini_sync.workers.naming import staging_layout

DEFAULT_PROFILES = Path(__file__).resolve().parents[2] / "destinations.toml"
DEFAULT_DUCKDB_FILE = "makini_sync.duckdb"
DATASET_NAME = "makini"
SYNC_KEYS = ("destination", "loader_file_format", "documents", "credentials_settings", "load_workers")  # read by the sync, not dlt
SECRET_KEYS = frozenset({"credentials", "password", "private_key", "private_key_passphrase", "token"})


@dataclass(frozen=True)
class Profile:
    name: str
    destination: str
    loader_file_format: Optional[TLoaderFileFormat] = None
    settings: dict[str, Any] = field(default_factory=dict)
    documents: bool = False  # a document store: child rows stay embedded in their parent
    credentials_settings: dict[str, Any] = field(default_factory=dict)
    load_workers: Optional[int] = None  # dlt's load job threads (None: dlt's default)

    @property
    def text_without_nul(self) -> bool:
        """PostgreSQL's text and jsonb cannot hold U+0000."""
        return self.destination == "postgres"

    def load(self, pipeline: dlt.Pipeline) -> None:
        """Load the normalized packages with this profile's number of load workers."""
        dlt_seam.load_packages(pipeline, self.load_workers)

    def with_settings(self, **settings: Any) -> "Profile":
        """This profile with more destination settings (e.g. explicit credentials in tests)."""
        return dataclasses.replace(self, settings={**self.settings, **settings})

    def apply_credentials_settings(self) -> None:
        """Non-secret connection settings (e.g. DuckDB's memory limit) as dlt config
        defaults under ``destination.<name>.credentials``; env variables still win."""
        for key, value in self.credentials_settings.items():
            dlt.secrets[f"destination.{self.name}.credentials.{key}"] = value

    def build(self) -> Destination:
        """The dlt destination, configured under ``destination.<profile name>``."""
        settings = dict(self.settings)
        if self.destination == "duckdb":
            self.duckdb_file()  # refuses a file named like the dataset
            if "credentials" not in settings and not self._database_configured():
                settings["credentials"] = DEFAULT_DUCKDB_FILE  # dlt would name it after the profile
            credentials = settings.get("credentials")
            if isinstance(credentials, str) and "://" not in credentials and not credentials.startswith("md:"):
                # a file path goes in as the database itself: dlt parses a string as a connection
                # URL first, which imports SQLAlchemy on every run (benchmarks/sync_benchmark.py)
                settings["credentials"] = {"database": credentials}
        destination = Destination.from_reference(self.destination, destination_name=self.name, **settings)
        assert destination is not None  # a reference always resolves or raises
        return destination

    def duckdb_file(self) -> Optional[str]:
        """The DuckDB file this profile writes, as dlt would resolve it (explicit setting,
        then ``destination.<name>.credentials``, then the default); None for an
        in-memory or externally opened database, or another destination."""
        if self.destination != "duckdb":
            return None
        configured: Any = self.settings.get("credentials")
        if configured is None:
            configured = dlt.secrets.get(f"destination.{self.name}.credentials")
        if isinstance(configured, dict):
            configured = configured.get("database")
        if configured is None:
            configured = DEFAULT_DUCKDB_FILE
        if not isinstance(configured, str) or configured == ":memory:" or configured.startswith("md:"):
            return None
        _refuse_database_named_like_dataset(configured)
        return configured

    def open_duckdb(self) -> Any:
        """A connection to this profile's DuckDB file, opened by dlt's own
        credentials so the profile's ``credentials_settings`` (memory cap,
        threads, with their env overrides) apply as they would to a connection
        dlt opened itself. The caller owns it and closes it."""
        self.apply_credentials_settings()
        destination = self.build()
        credentials = destination.configuration(destination.spec(), accept_partial=True).credentials
        return own_duckdb_connection(credentials)

    def location(self) -> str:
        """Where this profile's destination is, for an error line: host, port and
        database as configured, never user or password."""
        try:
            destination = self.build()
            credentials = destination.configuration(destination.spec(), accept_partial=True).credentials
        except Exception:  # noqa: BLE001 - unresolvable credentials: say what we can
            return "(credentials not resolved)"
        parts = [str(getattr(credentials, key, None) or "") for key in ("host", "port", "database")]
        host, port, database = parts
        if not host:
            return database or "(no host configured)"
        return f"{host}{':' + port if port else ''}{'/' + database if database else ''}"

    def _database_configured(self) -> bool:
        configured: Any = dlt.secrets.get(f"destination.{self.name}.credentials")
        return isinstance(configured, str) or (isinstance(configured, dict) and "database" in configured)


def _refuse_database_named_like_dataset(path: str) -> None:
    """DuckDB names a database after its file; a file called ``makini.duckdb``
    makes every ``makini.<table>`` ambiguous (catalog or schema?) and loads
    fail deep inside dlt. Say so up front."""
    if Path(path).stem == DATASET_NAME:
        raise ConfigurationError(
            f"the DuckDB file {Path(path).name!r} has the dataset's name ({DATASET_NAME!r}), which makes "
            f"DuckDB's table names ambiguous; name the file otherwise, e.g. {DEFAULT_DUCKDB_FILE!r}"
        )


def load_profiles(path: Optional[Path] = None) -> dict[str, Profile]:
    path = Path(path or DEFAULT_PROFILES)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigurationError(f"no destination profiles file at {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from None
    profiles = {}
    for name, body in raw.items():
        if not isinstance(body, dict) or "destination" not in body:
            raise ConfigurationError(f"profile [{name}] in {path} needs a `destination` key")
        leaked = SECRET_KEYS.intersection(body)
        if leaked:
            raise ConfigurationError(
                f"profile [{name}] in {path} holds {', '.join(sorted(leaked))}: secrets do not "
                f"belong in that file; set DESTINATION__{name.upper()}__CREDENTIALS or .dlt/secrets.toml"
            )
        settings = {k: v for k, v in body.items() if k not in SYNC_KEYS}
        profiles[name] = Profile(
            name,
            body["destination"],
            body.get("loader_file_format"),
            settings,
            bool(body.get("documents")),
            dict(body.get("credentials_settings") or {}),
            _load_workers(name, path, body.get("load_workers")),
        )
    return profiles


def _load_workers(name: str, path: Path, value: Any) -> Optional[int]:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"profile [{name}] in {path}: load_workers must be a whole number >= 1, not {value!r}")
    return value


def profile_for(pipeline: dlt.Pipeline, documents: Optional[bool] = None,
                loader_file_format: Optional[TLoaderFileFormat] = None) -> Profile:
    """The profile of a dlt pipeline someone else made (``run/own_pipeline.py``).
    ``documents`` None: true for the project's MongoDB destination."""
    destination = pipeline.destination
    if destination is None:
        raise ConfigurationError(f"pipeline {pipeline.pipeline_name!r} has no destination; give dlt.pipeline one")
    kind = destination.destination_type.rsplit(".", 1)[-1]
    if documents is None:
        documents = "mongodb" in destination.destination_type.lower()
    return Profile(destination.destination_name, kind, loader_file_format, documents=documents)


def load_profile(name: str, path: Optional[Path] = None) -> Profile:
    profiles = load_profiles(path)
    if name not in profiles:
        raise ConfigurationError(
            f"unknown destination {name!r}: destinations.toml defines {', '.join(profiles)}"
        )
    return profiles[name]


# dlt settings this project defaults differently from dlt; env variables and
# config files still win. Staging copies are emptied after each load rather
# than at the start of the next: left full, a DuckDB file has them written into
# it at close, which makes the close slower and the file larger
# (benchmarks/sync_benchmark.py; figures in benchmarks/RESULTS.md).
LOAD_DEFAULTS = {"load.truncate_staging_dataset": True}


def make_pipeline(profile: Profile, pipeline_name: str, dataset: str = DATASET_NAME, **kwargs: Any) -> dlt.Pipeline:
    """The project's dlt pipeline: state under dlt's data dir, and a staging
    dataset of its own (``workers/naming.py``) unless config names one."""
    profile.apply_credentials_settings()
    quiet_dlt_tracebacks()
    for key, value in LOAD_DEFAULTS.items():
        dlt.config[key] = value
    if not profile.documents and "staging_dataset_name_layout" not in profile.settings and \
            dlt.config.get(f"destination.{profile.name}.staging_dataset_name_layout") is None:
        profile = profile.with_settings(staging_dataset_name_layout=staging_layout(pipeline_name))
    return dlt.pipeline(
        pipeline_name=pipeline_name,
        destination=profile.build(),
        dataset_name=dataset,
        **kwargs,
    )
