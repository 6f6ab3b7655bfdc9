"""The `xmargin` command line: one click group, thin commands over the library API."""
