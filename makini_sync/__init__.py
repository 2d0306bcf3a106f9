"""makini-sync: the runner around the Makini dlt source (``sources/makini``).

Each concern has a room of its own (ARCHITECTURE.md draws the flow):

- ``run``: one sync run, from pending packages to the closing summary;
- ``integrity``: the rules that keep the warehouse exact (version fence,
  line-item pruning, tombstones, deltas, the writer lock);
- ``destinations``: destination profiles and what a destination needs beyond
  dlt (DuckDB's memory cap, PostgreSQL's key indexes, MongoDB);
- ``webhooks``: the receiver, its durable inbox, and the processor;
- ``scheduling``: what decides when to sync again (the polling fallback,
  reconcile).

Every use of dlt's private members is in ``sources/makini/dlt_seam.py``.
"""
