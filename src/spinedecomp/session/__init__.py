"""Session: the state machine that runs a protocol on a table with controller and safety."""
