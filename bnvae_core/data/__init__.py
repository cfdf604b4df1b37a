"""Data: the corpora (built-in WordNet glosses, corpus directories), dialogue pairs for the CVAE,
and the hub of the paper's datasets (downloaded and verified, or placed by hand)."""
