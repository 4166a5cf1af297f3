"""Rollout strategies: each turns (spec, observed, previous status) into an Outcome (pure)."""
