"""Stage 5, mining: settings and result, the plan of a run, the one-pass loop, processes under torchrun, the float64 reference."""
