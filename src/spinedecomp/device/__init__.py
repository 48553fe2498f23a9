"""Devices: the `Table` protocol, the simulated table (physics) and real-table drivers."""
