"""The rules that keep the warehouse exact: a stale version never overwrites a
newer row (``fence``), line items follow their parent's version (``pruning``),
deltas merge through the same fenced path (``deltas``), and one writer holds a
dataset at a time (``locking``)."""
