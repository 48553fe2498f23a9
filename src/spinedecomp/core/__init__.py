"""Core: quantities and their ranges, the injected clock, errors and events."""
