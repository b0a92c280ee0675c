"""Goldens: storing them, comparing outputs with them, and the tolerances that apply."""
