"""Pipeline names: one per destination profile, dataset and worker selection.

dlt keeps a pipeline's state (bookmarks, cursors, spools, pending packages)
under its name, locally and in the destination's ``_dlt_pipeline_state``.
Two runs that share a name share that state, so the name carries everything
that must not be shared: ``makini_sync__<profile>__<dataset>__<selection>``,
e.g. ``makini_sync__postgres__makini__shard_2_of_4``. Each pipeline also merges
through its own staging dataset, so no two writers ever touch one staging
table (dlt-hub/dlt#4297).
"""

from __future__ import annotations

import hashlib
import re

SYNC_PREFIX = "makini_sync"
LEGACY_SYNC_PIPELINE = "makini_sync"  # every sync's name before state was split per destination and worker


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", text.lower())


def sync_pipeline_name(profile: str, dataset: str, selection: str = "all") -> str:
    return f"{SYNC_PREFIX}__{_slug(profile)}__{_slug(dataset)}__{_slug(selection)}"


def writer_pipeline_name(kind: str, profile: str, dataset: str) -> str:
    """Pipelines that keep no bookmarks (webhook deltas, reconcile's records)."""
    return f"{_slug(kind)}__{_slug(profile)}__{_slug(dataset)}"


def sync_pipeline_prefix(profile: str, dataset: str) -> str:
    """What every sync pipeline of this destination and dataset is named with."""
    return f"{SYNC_PREFIX}__{_slug(profile)}__{_slug(dataset)}__"


def staging_layout(pipeline_name: str) -> str:
    """dlt's ``staging_dataset_name_layout`` for this pipeline: ``<dataset>_staging_<8 hex>``
    (short: MySQL names a staging dataset's database, 64 characters at most)."""
    digest = hashlib.sha256(pipeline_name.encode("utf-8")).hexdigest()[:8]
    return "%s_staging_" + digest
