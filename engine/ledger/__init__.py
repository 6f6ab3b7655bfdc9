"""The ledger: frozen events, commands, state, `apply` per event type and `decide` per command."""
