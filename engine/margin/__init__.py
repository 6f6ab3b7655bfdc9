"""Margin: the valuation of risk units (equity, initial and maintenance margin), collateral,
surveillance and liquidation."""
