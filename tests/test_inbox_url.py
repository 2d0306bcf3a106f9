"""``--inbox`` names a SQLite file or a JetStream stream; anything else is refused at start, in one line."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from makini_sync.webhooks.inbox_url import JetStreamAddress, inbox_location, parse_inbox
from pipelines.webhooks import main
from sources.makini.errors import ConfigurationError


@pytest.mark.parametrize("value, expected", [
    ("nats://127.0.0.1:4222", JetStreamAddress("nats://127.0.0.1:4222", "makini")),
    ("nats://127.0.0.1:4222/", JetStreamAddress("nats://127.0.0.1:4222", "makini")),
    ("nats://broker.internal:4222/prod_webhooks-2", JetStreamAddress("nats://broker.internal:4222", "prod_webhooks-2")),
    ("nats://[::1]:4222/x", JetStreamAddress("nats://[::1]:4222", "x")),
])
def test_nats_urls_name_a_stream(value, expected):
    assert parse_inbox(value) == expected


@pytest.mark.parametrize("value", ["inbox.sqlite", "/var/lib/makini/inbox.sqlite", "./odd:name.sqlite",
                                   "dir/with:colon.sqlite"])
def test_paths_stay_sqlite_files(value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_inbox(value) == Path(value).resolve()


REFUSED = ["xyz://a", "nats:/broken", "nats:broken", "nats://127.0.0.1", "nats://127.0.0.1:port/x",
           "nats://127.0.0.1:99999", "nats://127.0.0.1:4222/a.b", "nats://127.0.0.1:4222/a/b",
           "nats://user:secret@127.0.0.1:4222", "nats://127.0.0.1:4222/x?replicas=3", "http://127.0.0.1:4222",
           "c:inbox.sqlite"]


@pytest.mark.parametrize("value", REFUSED)
def test_anything_else_is_refused_saying_what_is_accepted(value):
    with pytest.raises(ConfigurationError) as refused:
        parse_inbox(value)
    message = str(refused.value)
    assert "\n" not in message and repr(value) in message
    assert "file path" in message and "nats://HOST:PORT[/STREAM]" in message


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["process", "--once"], ["dlq", "list"]])
@pytest.mark.parametrize("value", ["xyz://a", "nats:/broken"])
def test_every_command_refuses_at_start_with_one_line(command, value, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--inbox", value, *command]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nats://HOST:PORT[/STREAM]" in err, err
    assert not list(tmp_path.iterdir())  # no file made of the value


def test_the_environment_variable_is_held_to_the_same_rule(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAKINI_INBOX", "nats:/broken")
    assert main(["dlq", "list"]) == 2
    assert "MAKINI_INBOX 'nats:/broken' is not an inbox" in capsys.readouterr().err


def test_dlt_config_names_the_inbox_below_the_flag_and_the_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text('[sources.makini]\nwebhook_inbox = "nats://127.0.0.1:4222/prod"\n')
    env = {k: v for k, v in os.environ.items() if k not in ("MAKINI_INBOX", "SOURCES__MAKINI__WEBHOOK_INBOX")}
    # a process of its own: dlt reads config.toml from the working dir once per process
    read = subprocess.run([sys.executable, "-c", "from makini_sync.webhooks.inbox_url import inbox_location; "
                           "print(repr(inbox_location()))"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert read.stdout.strip() == repr(JetStreamAddress("nats://127.0.0.1:4222", "prod")), read.stderr
    monkeypatch.delenv("MAKINI_INBOX", raising=False)
    monkeypatch.setenv("SOURCES__MAKINI__WEBHOOK_INBOX", "nats://127.0.0.1:4222/from_env")
    assert inbox_location() == JetStreamAddress("nats://127.0.0.1:4222", "from_env")
    monkeypatch.setenv("MAKINI_INBOX", "inbox.sqlite")
    assert inbox_location() == (tmp_path / "inbox.sqlite").resolve()
    assert inbox_location("nats://127.0.0.1:4222/flag") == JetStreamAddress("nats://127.0.0.1:4222", "flag")


def test_a_configured_inbox_it_does_not_understand_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAKINI_INBOX", raising=False)
    monkeypatch.setenv("SOURCES__MAKINI__WEBHOOK_INBOX", "nats:/broken")
    assert main(["dlq", "list"]) == 2
    assert "sources.makini.webhook_inbox 'nats:/broken' is not an inbox" in capsys.readouterr().err
