"""Which connections a worker syncs, and the names that keep its state its own."""
