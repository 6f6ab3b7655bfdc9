"""Simulation: the event loop, execution, the strategy contract and the whole-run entry point."""
