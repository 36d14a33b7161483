"""mongo-backup-operator: back up and restore MongoDB as streamed raw BSON."""

__version__ = "0.1.0"
