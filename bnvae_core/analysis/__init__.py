"""Analysis of trained models: few-label classification on μ, the lagging-encoder diagnostic,
latent-space views and sampling."""
