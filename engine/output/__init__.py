"""Run folders: the event log, output tables, writing, reading back and verification."""
