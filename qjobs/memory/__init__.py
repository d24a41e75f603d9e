"""A user's travel memory: preference extraction, conversation summaries, their fold."""
