"""Recipes that train the lite zoo on the Shapes World (``loop.py`` holds the shared training loop)."""
