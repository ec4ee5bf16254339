"""Losses, stabilisers, checkpoints and the resumable trainer."""
