"""One module per ``nirvana-mri`` subcommand (argument parsing and user-facing output only)."""
