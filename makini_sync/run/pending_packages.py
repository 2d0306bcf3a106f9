"""Packages an earlier run extracted but did not load: load them, or set them aside.

A package whose load failed stays pending in dlt, and dlt tries it again first
on every later run; a package that can never load (a row the destination
refuses) would make every run fail. So a run loads what is pending once, and
if that fails again the package is set aside: copied out of the pipeline for
inspection and aborted (dlt's ``abort_packages``, which puts the local state
and schema back to where they were before it). The bookmarks are then those of
the last package that loaded, so the set-aside package's data is fetched
again; nothing loaded before is lost.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import dlt
from dlt.pipeline.exceptions import PipelineStepFailed

from sources.makini.settings import Entity

from makini_sync.run.destination_session import after_load
from makini_sync.run.load_errors import failure_cause
from makini_sync.destinations.profiles import Profile
from makini_sync.run.recovery import drop_committed_extractions

logger = logging.getLogger(__name__)

SET_ASIDE_DIR = "makini_set_aside_packages"


@dataclass(frozen=True)
class SetAside:
    load_id: str
    cause: str
    kept_at: Path


def finish_pending_loads(
    pipeline: dlt.Pipeline, profile: Profile, entities: Sequence[Entity], set_aside: list[SetAside]
) -> dlt.Pipeline:
    """Load what an interrupted or failed run left (its state came with it); set aside a
    package that fails again. Returns the pipeline to go on with."""
    drop_committed_extractions(pipeline)
    if not pipeline.has_pending_data:
        return pipeline
    logger.warning("loading data a previous run extracted but did not load")
    try:
        pipeline.normalize()
        profile.load(pipeline)
    except PipelineStepFailed as exc:
        return set_aside_pending(pipeline, failure_cause(exc), set_aside)
    if not profile.documents:
        after_load(pipeline, entities)
    return pipeline


def set_aside_pending(pipeline: dlt.Pipeline, cause: str, set_aside: list[SetAside]) -> dlt.Pipeline:
    """Copy the pending packages out and abort them."""
    keep = Path(pipeline.pipelines_dir).parent / SET_ASIDE_DIR / pipeline.pipeline_name  # beside, not among, pipelines
    load_ids = [*pipeline.list_extracted_load_packages(), *pipeline.list_normalized_load_packages()]
    for load_id in load_ids:
        package = Path(pipeline.get_load_package_info(load_id).package_path)
        target = keep / load_id
        if package.exists() and not target.exists():
            shutil.copytree(package, target)
        set_aside.append(SetAside(load_id, cause, target))
        logger.warning(
            "set aside load package %s, which failed again (%s); its data will be fetched again; "
            "the package is kept at %s", load_id, cause, target,
        )
    # dlt records the package as aborted and puts local state and schema back to
    # where they were before it
    pipeline.abort_packages()
    return pipeline
