"""The outside world behind small ports: market-data sources, venues, the price board,
clocks and logging. Imports ``state``; never ``actors``."""
