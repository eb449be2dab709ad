"""One module per command or command group; toolkit_cli.app wires them."""
