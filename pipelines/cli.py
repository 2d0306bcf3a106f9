"""``makini-sync``: one command, a subcommand per entry point.

    makini-sync sync --destination duckdb
    makini-sync webhooks serve --port 8080
    makini-sync webhooks process --destination postgres
    makini-sync reconcile --destination postgres --dry-run
    makini-sync sandbox --port 8765

Each subcommand takes the arguments of its ``python -m`` entry point
(``makini-sync sync --help`` lists them); those entry points stay.
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional

from pipelines.process_exit import exit_now

# subcommand -> (module with main(argv), what it does)
COMMANDS = {
    "sync": ("pipelines.sync", "sync entities into a destination (python -m pipelines.sync)"),
    "webhooks": ("pipelines.webhooks", "the webhook receiver and processor (python -m pipelines.webhooks)"),
    "reconcile": ("pipelines.reconcile", "repair drift between the API and the warehouse (python -m pipelines.reconcile)"),
    "sandbox": ("makini_sandbox.__main__", "run the local Makini emulator (python -m pipelines.sandbox)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: makini-sync COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {about}" for name, (_, about) in COMMANDS.items()]
    lines += ["", "makini-sync COMMAND --help shows a command's arguments."]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"makini-sync: unknown command {name!r}; the commands are {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest)


def run() -> None:
    """The ``makini-sync`` command: ``main``, then the process ends without its interpreter's teardown."""
    exit_now(main())


if __name__ == "__main__":
    run()
