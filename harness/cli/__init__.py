"""Command-line interface: ``python run.py COMMAND ...`` (one module per command)."""
