"""Pure scoring functions: latent inversion and distances to normal data (torch only)."""
