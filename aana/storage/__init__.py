"""The storage layer: entities, repositories, sessions and migrations."""
