"""Stage 8, evaluation: metrics, concept labels, trust scores, mutual information, the inversion and editing tables."""
