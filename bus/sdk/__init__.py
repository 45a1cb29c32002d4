"""sdk layer."""
