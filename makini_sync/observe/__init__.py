"""What the sync records about its runs in the destination, and the status view that reads it."""
