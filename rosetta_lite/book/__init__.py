"""Stage 9, the book: its Sphinx extension, clean notebooks, the papermill batch of chapters."""
