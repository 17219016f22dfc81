"""Stage 4, statistics: streaming co-moments (exact Pearson in one pass), binary counts for mutual information, exact statistics of resized maps, all-reduce primitives."""
