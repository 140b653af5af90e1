"""The verdicts, as every front end writes them."""

KNOWN = "known"
UNKNOWN_CLASS = "unknown class"
UNFAMILIAR_PHOTO = "unfamiliar photo"
NOT_AVAILABLE = "not available"
VERDICTS = (KNOWN, UNKNOWN_CLASS, UNFAMILIAR_PHOTO, NOT_AVAILABLE)
