"""Every use of a dlt (or requests) member that is not public API, in one place.

Why each is needed, and what public API would replace it if dlt offered one:

- ``load_step`` / ``raise_load_failure``: the sync loads one package on a
  thread while it extracts the next (``makini_sync/run/background_load.py``).
  ``Pipeline.load()`` cannot run beside an extraction: it reads the pipeline
  state when it starts and writes it back when it ends, putting older cursors
  back. So the seam builds dlt's own ``Load`` step the way ``Pipeline.load``
  does, from the pipeline's destination clients and load storage config, and
  raises its failures as ``Pipeline.load`` would. What ``Pipeline.load`` adds
  and this drops on purpose: its trace entry and progress display (the
  extraction owns them meanwhile), and its signal handling (the sync's main
  thread keeps dlt's).
- ``load_packages``: every other load runs the same step in the caller's
  thread, inside dlt's signal interception as ``Pipeline.load`` does.
  ``Pipeline.load`` builds a ``LoadInfo`` after each load, and its text
  renders the credentials as a SQLAlchemy URL, importing SQLAlchemy on every
  run, incremental ones included, for a text nothing here reads
  (``benchmarks/sync_variants.py``).
- ``drop_extracted_package``: mending the one crash window dlt leaves between
  normalize's rename and its delete (``makini_sync/run/recovery.py``). dlt has
  no public way to delete an extracted package.
- ``own_duckdb_connection``: a DuckDB connection opened by dlt's own
  credentials, so the profile's memory cap and threads apply as they do to
  dlt's connections (``makini_sync/destinations/profiles.py``). The pool's
  borrow/move methods are dlt's, not underscored, but undocumented.
- ``source_resources_state``: the committed bookmarks of the ``makini``
  source, read outside a running resource (dlt's state layout
  ``sources.<name>.resources``, shown by ``dlt pipeline info``).
- ``editing_source_state``: a worker's full refresh forgets its bookmarks
  and, before it deletes a row, commits that to the destination as a package
  holding only the state (``makini_sync/workers/full_refresh.py``);
  ``Pipeline.managed_state`` (not underscored, undocumented) does both. dlt's
  public ways to change state run inside a resource.
- ``stored_source_state``: the ``makini`` source's state another pipeline
  committed to the same destination (``makini_sync/workers/state_adoption.py``),
  read as dlt's own restore reads it (``get_stored_state`` of clients that
  keep state, then ``decompress_state``).
- ``keep_body``: requests reads a streamed body in 10 KiB chunks; the client
  reads it in 1 MiB chunks and hands it to requests as the response's content
  (``client.reading_whole_body``). requests has no public setter.

Checked against dlt 1.31.0 and requests 2.32. ``missing_members`` lists what
an installed release lacks; ``require`` raises naming it, and the sync calls
it before it starts, so an incompatible dlt fails at once and says what is
missing rather than deep inside a load (tests/test_dlt_seam.py).
"""

from __future__ import annotations

import contextlib
import datetime
from typing import Any, Iterator, Optional

import dlt
import requests
from dlt.common.runners import pool_runner
from dlt.common.runtime import signals
from dlt.common.runtime.collector import NULL_COLLECTOR, Collector
from dlt.load import Load
from dlt.load.configuration import LoaderConfiguration
from dlt.load.exceptions import LoadPackageAborted
from dlt.pipeline import state_sync
from dlt.pipeline.exceptions import PipelineStepFailed

CHECKED_AGAINST = {"dlt": "1.31.0", "requests": "2.32"}


def _required() -> list[tuple[str, Any, str]]:
    """(where, owner, member) for each member the seam relies on; an instance
    stands for a class whose member is set per instance."""
    from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

    return [
        ("dlt.Pipeline", dlt.Pipeline, "_get_destination_clients"),
        ("dlt.Pipeline", dlt.Pipeline, "_load_storage_config"),
        ("dlt.Pipeline", dlt.Pipeline, "_get_step_info"),
        ("dlt.Pipeline", dlt.Pipeline, "_cleanup_aborted_package"),
        ("dlt.Pipeline", dlt.Pipeline, "_update_last_run_context"),
        ("dlt.Pipeline", dlt.Pipeline, "runtime_config"),
        ("dlt.common.runtime.signals", signals, "intercepted_signals"),
        ("dlt.Pipeline", dlt.Pipeline, "_get_normalize_storage"),
        ("dlt.load.configuration.LoaderConfiguration", LoaderConfiguration, "_load_storage_config"),
        ("dlt.load.Load", Load, "current_load_id"),
        ("dlt.common.runners.pool_runner", pool_runner, "run_pool"),
        ("dlt.destinations.impl.duckdb.configuration.DuckDbCredentials", DuckDbCredentials, "conn_pool"),
        ("dlt.Pipeline", dlt.Pipeline, "managed_state"),
        ("dlt.pipeline.state_sync", state_sync, "decompress_state"),
        ("requests.Response", requests.Response(), "_content"),
    ]


def missing_members(required: Optional[list[tuple[str, Any, str]]] = None) -> list[str]:
    """``where.member`` for each relied-on member the installed releases lack."""
    return [f"{where}.{member}" for where, owner, member in (required if required is not None else _required())
            if not hasattr(owner, member)]


class IncompatibleDlt(RuntimeError):
    pass


def require() -> None:
    """Raise, naming each member, when the installed dlt lacks what the seam uses."""
    missing = missing_members()
    if missing:
        raise IncompatibleDlt(
            f"this dlt release lacks {', '.join(missing)}, which makini-sync relies on "
            f"(checked against dlt {CHECKED_AGAINST['dlt']}); install that release: "
            f"pip install 'dlt=={CHECKED_AGAINST['dlt']}'"
        )


def load_step(pipeline: dlt.Pipeline, workers: Optional[int] = None, collector: Collector = NULL_COLLECTOR) -> Load:
    """dlt's ``Load`` step for the pipeline's normalized packages, as ``Pipeline.load`` builds it.

    Build it in the caller's thread: the clients are made from the live schema.
    ``collector``: none by default, since beside an extraction the progress display is the extraction's.
    """
    client, staging = pipeline._get_destination_clients()
    workers_setting: dict[str, Any] = {"workers": workers} if workers else {}
    config = LoaderConfiguration(
        **workers_setting,
        _load_storage_config=pipeline._load_storage_config(),
    )
    return Load(
        pipeline.destination,
        staging_destination=pipeline.staging,
        collector=collector,
        is_storage_owner=False,
        config=config,
        initial_client_config=client.config,
        # None without staging, as Pipeline.load passes it; dlt's annotation omits None
        initial_staging_client_config=staging.config if staging else None,  # type: ignore[arg-type]
    )


def run_load_step(step: Load) -> None:
    pool_runner.run_pool(step.config, step)


def load_packages(pipeline: dlt.Pipeline, workers: Optional[int] = None) -> None:
    """``Pipeline.load()`` without the load info it builds after a load: that renders the
    credentials as a URL, which imports SQLAlchemy on every run.
    As there, SIGINT and SIGTERM wait for the running jobs (unless the runtime says not
    to intercept them), the pipeline's progress display shows the load, and failures are
    raised as ``Pipeline.load`` raises them. Not kept: its trace entry."""
    if not pipeline.default_schema_name:
        return  # nothing was ever extracted
    step = load_step(pipeline, workers, pipeline.collector)
    if not step.load_storage.is_storage_ready():
        return
    try:
        with signals.intercepted_signals() if pipeline.runtime_config.intercept_signals else contextlib.nullcontext():
            run_load_step(step)
    except (Exception, KeyboardInterrupt) as exc:
        raise_load_failure(pipeline, step, exc)
    pipeline._update_last_run_context()


def raise_load_failure(pipeline: dlt.Pipeline, step: Load, exc: BaseException) -> None:
    """Raise ``exc`` from ``step`` as ``Pipeline.load`` would (an aborted package
    is cleaned up first; one aborted without a job failure is no failure)."""
    info = pipeline._get_step_info(step)
    if isinstance(exc, LoadPackageAborted):
        pipeline._cleanup_aborted_package(exc.load_id)
        if exc.job_exception is None:
            return
        raise PipelineStepFailed(pipeline, "load", exc.load_id, exc.job_exception, info) from exc.job_exception
    load_id: Any = getattr(exc, "load_id", None) or step.current_load_id
    raise PipelineStepFailed(pipeline, "load", load_id, exc, info) from exc


def drop_extracted_package(pipeline: dlt.Pipeline, load_id: str) -> None:
    pipeline._get_normalize_storage().extracted_packages.delete_package(load_id)


def own_duckdb_connection(credentials: Any) -> Any:
    """A connection from dlt's DuckDB credentials that the caller owns and closes."""
    pool = credentials.conn_pool
    borrowed = pool.borrow_conn()
    connection = pool.move_conn()  # ours now: returning the clone does not close it
    pool.return_conn(borrowed)
    return connection


def source_resources_state(pipeline: dlt.Pipeline, source: str = "makini") -> dict:
    """Committed state of the source's resources (resource name -> its state)."""
    return pipeline.state.get("sources", {}).get(source, {}).get("resources", {})


@contextlib.contextmanager
def editing_source_state(pipeline: dlt.Pipeline, extract: bool, source: str = "makini") -> Iterator[dict]:
    """The source's resources state, to change; saved on exit, and with ``extract``
    put in a new load package of its own (load it to commit the change)."""
    with pipeline.managed_state(extract_state=extract) as state:
        yield state.setdefault("sources", {}).setdefault(source, {}).setdefault("resources", {})


def stored_source_state(job_client: Any, pipeline_name: str,
                        source: str = "makini") -> Optional[tuple[dict, datetime.datetime]]:
    """The source's resources state ``pipeline_name`` last committed at this destination,
    and when; None where the destination keeps no state or holds none for it."""
    from dlt.common.destination.client import WithStateSync

    if not isinstance(job_client, WithStateSync):
        return None
    stored = job_client.get_stored_state(pipeline_name)
    if not stored:
        return None
    state = state_sync.decompress_state(stored.state)
    return state.get("sources", {}).get(source, {}).get("resources", {}), stored.created_at


def keep_body(response: requests.Response, content: bytes) -> None:
    """Give a streamed response the body read for it, as requests' ``content`` would."""
    response._content = content


def body_unread(response: requests.Response) -> bool:
    """Whether requests has not read the body yet (a hook may have read an error body)."""
    return response._content is False
