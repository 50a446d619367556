"""Energies with hand-derived gradients, NumPy in and out."""
