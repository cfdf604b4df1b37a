"""bnvae_core: posterior collapse in LSTM text VAEs and its fix BN-VAE (Zhu et al., ACL 2020).

Importing the package changes nothing in the process (no environment variables, no torch
import): the command line sets its thread policy itself (:mod:`bnvae_core.threads`).

``bnvae_core.diagnose(run)`` — the collapse report card
(:func:`bnvae_core.analysis.diagnose.diagnose`) — is imported on first use, so that
``import bnvae_core`` stays light.
"""
__version__ = "0.2.0"

#: attributes imported on first access (module-level ``__getattr__``, PEP 562): name → (module, attribute)
_LAZY = {"diagnose": ("bnvae_core.analysis.diagnose", "diagnose")}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value            # later look-ups skip __getattr__
        return value
    raise AttributeError(f"module 'bnvae_core' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
