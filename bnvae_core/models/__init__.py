"""Models: the layers (LSTM encoder, BN head, LSTM decoder), the posterior families and their
distributions, the text VAE and the conditional VAE. Built by a method, never by name."""
