"""Core data models of aana."""
