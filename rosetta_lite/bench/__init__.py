"""Benchmarks that print JSON: mining speed and exactness, training steps."""
