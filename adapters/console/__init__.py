"""The operator's console: the REPL and the log sinks."""
