"""Stage 6, the dictionary: best buddies, Rosetta neurons, clusters, the saved dictionary, standardised unit maps, whole runs."""
