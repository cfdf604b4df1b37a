"""One evaluation cache: the test metrics of a trained run, computed once and kept beside it.

:func:`evaluate_run` is what ``compare`` and ``reproduce`` report: the method's
:meth:`~bnvae_core.methods.base.Method.evaluate` (IW-NLL with K importance samples, PPL, KL, MI,
AU, ELBO) of a run on one split, stored as ``<run>/eval/<split>-K<k>-<key>.json``. The key
covers everything the numbers depend on: K, split, seed, the run's config hash, the size and
time of its ``model.pt``, the sha256 of the split's token ids (a test file changed on disk is
evaluated again), and :data:`EVAL_VERSION` (bumped when the metrics change).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..data.corpus import content_digest
from ..io import atomic_write_json
from ..methods import make_method

#: version of the evaluation code: stored evaluations of another version are recomputed
EVAL_VERSION = 1


def evaluate_run(run, split: str = "test", iw_samples: int = 500, seed: int = 0, progress: bool = False) -> dict:
    """The method's evaluation of ``run`` on ``split`` (cached in its run folder when it has one;
    an unreadable or stale stored file is recomputed, a read-only folder still gives results).
    Keys: ``nll, ppl, kl, mi, au, elbo, rec, n_sentences, n_tokens, iw_samples``."""
    key = {"version": EVAL_VERSION, "k": iw_samples, "split": split, "seed": seed, "config": run.config.hash(),
           "data": content_digest(run.corpus.splits[split])}
    cache_file = None
    if run.path is not None and (Path(run.path) / "model.pt").is_file():
        stat = (Path(run.path) / "model.pt").stat()
        key["model_pt"] = [stat.st_size, stat.st_mtime_ns]
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        cache_file = Path(run.path) / "eval" / f"{split}-K{iw_samples}-{digest}.json"
        if cache_file.is_file():
            try:
                return json.loads(cache_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                pass
    result = make_method(run.config).evaluate(run.model, run.corpus.splits[split], iw_samples=iw_samples,
                                              seed=seed, progress=progress)
    if cache_file is not None:
        try:
            cache_file.parent.mkdir(exist_ok=True)
            atomic_write_json(cache_file, result)
        except OSError:
            pass   # read-only cache: the result is still returned
    return result
