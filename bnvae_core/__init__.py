"""bnvae_core: posterior collapse in LSTM text VAEs and its fix BN-VAE (Zhu et al., ACL 2020).

Importing the package changes nothing in the process (no environment variables, no torch
import): the command line sets its thread policy itself (:mod:`bnvae_core.threads`).
"""
__version__ = "0.2.0"
