"""Training: the update step (:mod:`.step`), the trainer and its schedule (:mod:`.loop`), the run
folder (:mod:`.run_folder`) and the config-hashed cache of trained runs (:mod:`.cache`)."""
