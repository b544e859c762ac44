"""An application that extends VideoEntity with its own columns and migrations."""
