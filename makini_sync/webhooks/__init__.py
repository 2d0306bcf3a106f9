"""Webhooks: a receiver that stores signed events durably, and a processor that merges them."""
