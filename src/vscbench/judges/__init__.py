"""Judges stage: (query, response[, image]) -> Label, and validation against human labels."""
