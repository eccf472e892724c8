"""AstroM3-style trimodal contrastive learning: light curves, spectra and catalogue metadata of variable stars."""
