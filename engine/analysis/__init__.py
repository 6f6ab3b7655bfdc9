"""Analysis over runs: summaries, distance to liquidation, compare and stress."""
