"""The MongoDB destination's former reference, ``makini_sync.mongodb.mongodb_destination``,
kept so that a ``destinations.toml`` written before the layout change still loads.
The destination lives in ``makini_sync/destinations/mongodb/``."""

from makini_sync.destinations.mongodb import mongodb_destination

__all__ = ["mongodb_destination"]
