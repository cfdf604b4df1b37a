"""Build the built-in WordNet-gloss corpus shipped in ``bnvae_core/corpora``.

Not run at install time: the output is committed. Re-run it to rebuild::

    apt-get download wordnet-base            # Debian's WordNet 3.0 data files
    dpkg -x wordnet-base_*.deb /tmp/wn
    python scripts/build_wordnet_corpus.py /tmp/wn/usr/share/wordnet

Each synset of ``data.{noun,verb,adj,adv}`` gives one record::

    split <TAB> pos <TAB> lexname <TAB> gloss

* ``gloss`` is the definition only: the gloss field after ``|`` is cut at the first
  ``;`` that starts a quoted example sentence (``; "``) and stripped.
* ``lexname`` is the lexicographer file (``noun.animal``, ``verb.motion``, ...), the label.
* ``split`` is deterministic: ``sha256(pos + offset) mod 20`` → 0 = test, 1 = valid, else train
  (90 / 5 / 5 %), so a rebuild from the same WordNet files gives the same file byte for byte.

The WordNet 3.0 licence allows redistribution with its notice, which sits beside the data
(``bnvae_core/corpora/WORDNET_LICENSE``).
"""
from __future__ import annotations

import gzip
import hashlib
import sys
from pathlib import Path

POS_FILES = {"n": "data.noun", "v": "data.verb", "a": "data.adj", "r": "data.adv"}
# lexicographer file numbers → names (wnintro lexnames(5WN)), index = number
LEXNAMES = """adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute
noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group
noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession
noun.process noun.quantity noun.relation noun.shape noun.state noun.substance noun.time
verb.body verb.change verb.cognition verb.communication verb.competition verb.consumption
verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession
verb.social verb.stative verb.weather adj.ppl""".split()


def definition_of(gloss: str) -> str:
    """The definition part of a WordNet gloss, without its quoted example sentences."""
    cut = gloss.find('; "')
    if cut < 0 and gloss.startswith('"'):
        return ""
    text = gloss if cut < 0 else gloss[:cut]
    return " ".join(text.replace("\t", " ").split()).strip(" ;")


def split_of(pos: str, offset: str) -> str:
    bucket = int(hashlib.sha256(f"{pos}{offset}".encode()).hexdigest(), 16) % 20
    return "test" if bucket == 0 else "valid" if bucket == 1 else "train"


def main(wordnet_dir: str, out: str = "bnvae_core/corpora/wordnet_glosses.tsv.gz") -> None:
    rows = []
    for pos, name in POS_FILES.items():
        for line in (Path(wordnet_dir) / name).read_text(encoding="utf-8").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue  # licence header
            head, gloss = line.split("|", 1)
            fields = head.split()
            offset, lexnum = fields[0], int(fields[1])
            text = definition_of(gloss.strip())
            if text:
                rows.append(f"{split_of(pos, offset)}\t{pos}\t{LEXNAMES[lexnum]}\t{text}\n")
    tmp = Path(out + ".tmp")
    # mtime=0 so the gzip bytes are reproducible
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
        fh.write("".join(rows).encode("utf-8"))
    tmp.replace(out)
    print(f"wrote {len(rows)} glosses to {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
