"""Stage 9, the book: its Sphinx extension, clean notebooks, the papermill batch of chapters, what the
chapters call where the scale or a missing control changes their work."""
