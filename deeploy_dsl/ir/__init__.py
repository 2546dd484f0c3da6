"""The compute graph and the plan of steps."""
