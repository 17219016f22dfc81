"""The book: its Sphinx extension, clean notebooks, the papermill batch of chapters."""
