"""Scoring orchestration: features, model, drivers, actions, score records."""
