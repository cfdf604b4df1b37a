"""The command line, ``python -m bnvae_core COMMAND``: the parser (:mod:`.main`), the flags derived
from the config fields (:mod:`.args`), and one module per command (:mod:`.commands`)."""
