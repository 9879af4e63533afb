"""Market data: sources of ticks and quotes (live websockets, REST fallback, replay files, simulation), their frame parsers and recorders."""
