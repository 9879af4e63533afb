"""The actors: one pykka actor per role on its own thread, the bus that routes their messages,
and the supervisor that restarts them. Imports ``state`` and, of ``adapters``, only the ports
and errors; ``run.py`` wires them."""
