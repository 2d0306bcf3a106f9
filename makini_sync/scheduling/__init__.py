"""When to sync again: the polling fallback when webhooks go quiet, and
reconcile, which repairs drift between the API and the warehouse."""
