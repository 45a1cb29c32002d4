"""nats layer."""
