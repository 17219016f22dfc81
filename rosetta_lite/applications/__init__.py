"""Stage 7, applications: inversion into the generator and edits of its units, on one latent-optimisation loop."""
