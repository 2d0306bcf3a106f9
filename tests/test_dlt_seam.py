"""The dlt seam (sources/makini/dlt_seam.py): the installed releases have every
member it relies on, and a release that lacks one fails naming it."""

from __future__ import annotations

import pytest

from sources.makini import dlt_seam


def test_the_installed_dlt_has_every_member_the_seam_uses():
    assert dlt_seam.missing_members() == []
    dlt_seam.require()


def test_a_missing_member_is_named(monkeypatch):
    import dlt

    monkeypatch.delattr(dlt.Pipeline, "_get_step_info")
    assert dlt_seam.missing_members() == ["dlt.Pipeline._get_step_info"]
    with pytest.raises(dlt_seam.IncompatibleDlt, match=r"lacks dlt\.Pipeline\._get_step_info.*pip install 'dlt==1\.31\.0'"):
        dlt_seam.require()


def test_a_sync_refuses_to_start_on_an_incompatible_dlt(monkeypatch, tmp_path):
    import dlt

    from makini_sync.destinations.profiles import load_profile
    from makini_sync.run.sync import run_sync

    monkeypatch.delattr(dlt.Pipeline, "_load_storage_config")
    profile = load_profile("duckdb").with_settings(credentials=str(tmp_path / "seam.duckdb"))
    with pytest.raises(dlt_seam.IncompatibleDlt, match=r"dlt\.Pipeline\._load_storage_config"):
        run_sync(profile, base_url="http://127.0.0.1:9", api_token="unused")  # fails before any request
    assert not (tmp_path / "seam.duckdb").exists()
