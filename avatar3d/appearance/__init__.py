"""appearance."""
