"""Venues: the rule sets (data files with source and date) and the instruments a run trades."""
