"""Chapter's full-scale experiments (to come)."""
EXPERIMENTS = []
