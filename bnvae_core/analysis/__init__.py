"""Analysis of trained models: few-label classification on μ (classify), the lagging-encoder
diagnostic (lagging), latent-space views and neighbours (latent), BN-VAE's KL floor measured
(bn_floor), summaries of per-sentence KL tables (collapse) and sampling (generate)."""
