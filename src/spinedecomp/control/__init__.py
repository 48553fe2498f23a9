"""Control: treatment protocols, trajectories (set-points over time) and the force control law."""
