"""serve package of llava."""
