"""destinations.toml: what a profile may hold, and the errors a bad one gets."""

import pytest

from makini_sync.destinations.profiles import load_profile, load_profiles
from sources.makini.errors import ConfigurationError


def write(tmp_path, text):
    path = tmp_path / "destinations.toml"
    path.write_text(text)
    return path


def test_the_shipped_profiles_load():
    profiles = load_profiles()
    assert set(profiles) == {"duckdb", "postgres", "mysql", "snowflake", "mongodb"}
    assert profiles["duckdb"].load_workers == 2 and profiles["postgres"].load_workers is None
    assert "load_workers" not in profiles["duckdb"].settings  # read by the sync, not passed to dlt


def test_a_secret_in_a_profile_is_refused_without_echoing_it(tmp_path):
    path = write(tmp_path, '[pg]\ndestination = "postgres"\ncredentials = "postgresql://u:hunter2@h/db"\n')
    with pytest.raises(ConfigurationError) as error:
        load_profiles(path)
    assert "DESTINATION__PG__CREDENTIALS" in str(error.value) and "hunter2" not in str(error.value)


@pytest.mark.parametrize("value", ["0", '"two"', "true", "1.5"])
def test_load_workers_must_be_a_positive_whole_number(tmp_path, value):
    path = write(tmp_path, f'[duckdb]\ndestination = "duckdb"\nload_workers = {value}\n')
    with pytest.raises(ConfigurationError, match="load_workers must be a whole number >= 1"):
        load_profiles(path)


def test_unknown_profile_and_broken_file_name_what_to_fix(tmp_path):
    with pytest.raises(ConfigurationError, match="unknown destination 'nope': destinations.toml defines duckdb"):
        load_profile("nope")
    with pytest.raises(ConfigurationError, match="is not valid TOML"):
        load_profiles(write(tmp_path, "[duckdb\n"))
    with pytest.raises(ConfigurationError, match="needs a `destination` key"):
        load_profiles(write(tmp_path, "[duckdb]\nloader_file_format = 'parquet'\n"))


@pytest.mark.parametrize("credentials", ["/tmp/x/makini.duckdb", "makini.db"])
def test_a_duckdb_file_named_like_the_dataset_is_refused_with_a_way_out(credentials):
    profile = load_profile("duckdb").with_settings(credentials=credentials)
    with pytest.raises(ConfigurationError, match="name the file otherwise, e.g. 'makini_sync.duckdb'"):
        profile.build()


def test_a_duckdb_file_named_like_the_dataset_in_env_is_refused(monkeypatch):
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", "/tmp/makini.duckdb")
    with pytest.raises(ConfigurationError, match="has the dataset's name"):
        load_profile("duckdb").build()


def test_the_duckdb_file_a_sync_opens_is_the_one_dlt_would(monkeypatch, tmp_path):
    monkeypatch.delenv("DESTINATION__DUCKDB__CREDENTIALS", raising=False)
    profile = load_profile("duckdb")
    assert profile.duckdb_file() == "makini_sync.duckdb"  # the default, in the working directory
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(tmp_path / "from_env.duckdb"))
    assert profile.duckdb_file() == str(tmp_path / "from_env.duckdb")
    assert profile.with_settings(credentials=str(tmp_path / "explicit.duckdb")).duckdb_file() == str(
        tmp_path / "explicit.duckdb")
    assert profile.with_settings(credentials=":memory:").duckdb_file() is None
    assert load_profile("postgres").duckdb_file() is None
    with pytest.raises(ConfigurationError, match="has the dataset's name"):
        profile.with_settings(credentials=str(tmp_path / "makini.duckdb")).duckdb_file()


def _as_duckdb_shows(memory_limit):
    import duckdb

    with duckdb.connect() as connection:
        connection.execute(f"SET memory_limit = '{memory_limit}'")
        return connection.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def test_the_run_database_opens_with_the_profiles_duckdb_settings(monkeypatch, tmp_path):
    from makini_sync.run.run_database import RunDatabase

    profile = load_profile("duckdb").with_settings(credentials=str(tmp_path / "w.duckdb"))
    with RunDatabase(profile) as database:
        threads, memory = database.connection.execute(
            "SELECT current_setting('threads'), current_setting('memory_limit')").fetchone()
    settings = profile.credentials_settings["global_config"]
    assert (threads, memory) == (settings["threads"], _as_duckdb_shows(settings["memory_limit"]))
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG", '{"threads": 1, "memory_limit": "100MB"}')
    with RunDatabase(profile) as database:
        assert database.connection.execute(
            "SELECT current_setting('threads'), current_setting('memory_limit')").fetchone() == (1, "95.3 MiB")


def test_the_former_mongodb_reference_still_resolves():
    from dlt.common.destination import Destination

    former = Destination.from_reference("makini_sync.mongodb.mongodb_destination", destination_name="mongodb")
    current = Destination.from_reference("makini_sync.destinations.mongodb.mongodb_destination", destination_name="mongodb")
    assert former.destination_type == current.destination_type == "makini_sync.destinations.mongodb.MongodbDestinationDestination"
