"""``python -m bnvae_core generate DIR --context "..." [--n 5]``: sample responses from a CVAE run.

``DIR`` is a finished run folder of ``cvae`` or ``bn-cvae`` (``train --model cvae ...``). Each
``--context`` is one utterance, oldest first (repeat the flag for a multi-turn context). For a
label-conditioned model (``--data wordnet``) give ``--label`` instead (e.g. ``noun.animal``):
the context is then the label, as in training. For every response ``z ~ p(z|c)`` is drawn from
the prior network and decoded greedily (``--sample``: ancestral sampling of the words too), so
the variety of the responses is the variety the latent variable carries.

Prints one response per line, or with ``--json`` one JSON object
``{"context": [...], "responses": [...], "model": ..., "unknown_words": [...]}``. Context words
that are not in the vocabulary are read as ``<unk>`` and listed on stderr.
"""

from __future__ import annotations

import argparse
import sys

from ...analysis.generate import respond
from ...data.dialogue import label_context
from ...errors import ConfigError
from ...io import json_dumps
from ...methods import make_method
from ...training.run_folder import load_run

HELP = "sample responses of a cvae/bn-cvae run to a context (or label)"
INTERRUPTED = "interrupted: generate stopped; nothing was written"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a finished cvae or bn-cvae run folder")
    p.add_argument("--context", action="append", default=[], metavar="UTTERANCE",
                   help="one context utterance; repeat for several, oldest first")
    p.add_argument("--label", help="label-conditioned models (--data wordnet): the label, e.g. noun.animal")
    p.add_argument("--n", type=int, default=5, help="number of responses (default 5)")
    p.add_argument("--sample", action="store_true",
                   help="sample the words too (default: greedy decoding of each z)")
    p.add_argument("--max-len", type=int, default=30, help="at most this many tokens per response")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="default: the run's own (auto: CUDA when available)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of lines")


def context_from_args(args: argparse.Namespace, corpus) -> list[str]:
    """The context utterances the arguments ask for; :class:`ConfigError` when they do not fit the run."""
    if args.label is not None and args.context:
        raise ConfigError("give either --context or --label, not both")
    if corpus.label_conditioned:
        if args.context:
            raise ConfigError("this model is label-conditioned: give --label (one of: "
                              f"{', '.join(corpus.label_names)})")
        if args.label is None:
            raise ConfigError("give --label (one of: " + ", ".join(corpus.label_names) + ")")
        if args.label not in corpus.label_names:
            raise ConfigError(f"unknown label {args.label!r} (choose from: {', '.join(corpus.label_names)})")
        return label_context(args.label)
    if args.label is not None:
        raise ConfigError("--label is for label-conditioned models (trained with --data wordnet); "
                          "this one reads dialogue contexts: give --context")
    if not args.context:
        raise ConfigError('give the context: --context "an utterance" (repeat for several, oldest first)')
    return list(args.context)


def run(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise ConfigError(f"--n must be >= 1, got {args.n}")
    if args.max_len < 1:
        raise ConfigError(f"--max-len must be >= 1, got {args.max_len}")
    run_ = load_run(args.run_dir, device=args.device)
    if not make_method(run_.config).conditional:
        raise ConfigError(f"{args.run_dir}: a {run_.config.model!r} run; generate needs a cvae or bn-cvae run "
                          "(train --model cvae or --model bn-cvae)")
    context = context_from_args(args, run_.corpus)
    _, unknown = run_.corpus.encode_context(context)
    if unknown:
        print(f"note: not in the vocabulary, read as <unk>: {', '.join(sorted(set(unknown)))}", file=sys.stderr)
    responses = respond(run_.model, run_.corpus, [context], n=args.n, greedy=not args.sample,
                        max_len=args.max_len, seed=args.seed)[0]
    if args.json:
        print(json_dumps({"context": context, "responses": responses, "model": run_.config.model,
                          "unknown_words": sorted(set(unknown))}))
    else:
        for text in responses:
            print(text)
    return 0


