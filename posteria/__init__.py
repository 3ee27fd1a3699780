"""posteria."""
