"""The score store: scores, actions, keys and sessions, each table's SQL in one place."""
