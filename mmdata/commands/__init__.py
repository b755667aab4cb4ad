"""The command layer: `mmdata` and its subcommands (cli), the run summary, `mmdata check`
and the table printer. Nothing below imports it."""
