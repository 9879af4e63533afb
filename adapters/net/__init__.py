"""Network plumbing shared by feeds and venues: the websocket connection, backoff and the process's REST token bucket."""
