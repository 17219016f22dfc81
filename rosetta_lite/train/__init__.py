"""Recipes that train the lite zoo on the Shapes World (see ``common.py`` for the shared loop)."""
