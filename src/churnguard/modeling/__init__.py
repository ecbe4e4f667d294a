"""Candidate recipes, calibration, the ChurnModel and its registry."""
