"""A worker's share of the configured connections: all of them, or one shard.

``--shard K/N`` lets N cron hosts or containers split a fleet with no
coordinator: a connection belongs to shard ``1 + sha256(token) mod N``. The
hash of its token is all it depends on, so adding or removing a connection
never moves another one; changing N moves most of them (each costs what a
move costs: see ``state_adoption.py``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Optional, Sequence

from sources.makini.errors import ConfigurationError

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_WORKER_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,39}$")


def shard_of(token: str, count: int) -> int:
    """The shard (1..count) a connection's token belongs to."""
    digest = hashlib.sha256(token.encode("utf-8")).digest()
    return 1 + int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        match = _SHARD.match(text or "")
        if not match:
            raise ConfigurationError(f"--shard must be K/N, e.g. --shard 1/4, not {text!r}")
        index, count = int(match.group(1)), int(match.group(2))
        if not 1 <= index <= count:
            raise ConfigurationError(f"--shard {text}: K must be between 1 and N (here 1..{count})")
        return cls(index, count)

    def holds(self, token: str) -> bool:
        return shard_of(token, self.count) == self.index

    @property
    def label(self) -> str:
        return f"shard_{self.index}_of_{self.count}"


@dataclass(frozen=True)
class WorkerSelection:
    """All configured connections, or one shard of them; ``name`` labels a
    worker whose own token list differs from the other workers' (it names its
    pipeline, so its state is its own)."""

    shard: Optional[Shard] = None
    name: Optional[str] = None

    def __post_init__(self) -> None:
        if self.name is not None and not _WORKER_NAME.match(self.name):
            raise ConfigurationError(
                f"--worker {self.name!r}: use 1-40 lowercase letters, digits or underscores, e.g. --worker plant_eu"
            )

    @property
    def label(self) -> str:
        """The part of the pipeline name that says which connections are this worker's."""
        if self.name:
            return f"{self.name}_{self.shard.label}" if self.shard else self.name
        return self.shard.label if self.shard else "all"

    def pick(self, tokens: Sequence[str]) -> list[str]:
        """The tokens of this worker's connections, in their configured order."""
        if self.shard is None:
            return list(tokens)
        return [token for token in tokens if self.shard.holds(token)]
