"""The `ragfleet` command line: validates, enqueues, waits and prints; no heavy work."""
