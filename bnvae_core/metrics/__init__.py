"""Metrics: ELBO, IW-NLL, PPL, KL, MI and active units of text VAEs (:mod:`.text`), and the
dialogue metrics of the conditional VAE (:mod:`.dialogue`)."""
