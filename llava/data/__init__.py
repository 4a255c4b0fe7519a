"""data package of llava."""
