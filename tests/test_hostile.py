"""Hostile input, second round (issue 17): races between real processes, a model never paired with
another vocabulary, what the operating system refuses (full disk, read-only, impossible paths) as
one line, unclear messages made clear, datasets verified with a manifest, interrupted commands.

Tiny models on a generated corpus (a second or two each); the races and the killed process are
real processes. The full-disk tests mount a small tmpfs (root or CAP_SYS_ADMIN) and are skipped
with the reason where that is not possible; read-only folders use ``chattr +i`` (root) or
``chmod`` (others).
"""
from __future__ import annotations

import io
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import warnings
from pathlib import Path

import pytest
import torch

from bnvae_core.cli.main import main
from bnvae_core.config import TrainConfig
from bnvae_core.data import hub
from bnvae_core.errors import (
    ArchiveError,
    BnvaeWarning,
    ConfigError,
    DatasetUnavailableError,
    FolderInUseError,
    NonFiniteLossError,
    RunError,
    StorageError,
)
from bnvae_core.io import FolderLock, read_jsonl, write_jsonl
from bnvae_core.training import cache as cache_module
from bnvae_core.training.cache import cached_run, entry_name
from bnvae_core.training.loop import train
from bnvae_core.training.run_folder import load_run

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TINY_FLAGS = ["--max-train", "0", "--max-eval", "0", "--emb-dim", "8", "--hidden-dim", "8", "--nz", "2",
              "--epochs", "1", "--batch-size", "16", "--device", "cpu", "--no-progress"]
#: python -c: the command line, with every corpus read slowed by $SLOW seconds (so two processes
#: started together both pass the start before either has written anything)
SLOW = ("import os, sys, time, bnvae_core.data.corpus as c; f = c.load_corpus\n"
        "def slow(*a, **k):\n    time.sleep(float(os.environ.get('SLOW', '2'))); return f(*a, **k)\n"
        "c.load_corpus = slow\n"
        "from bnvae_core.cli.main import main; sys.argv[0] = 'bnvae_core'; raise SystemExit(main())")
CACHED = ("import os, sys, time, bnvae_core.data.corpus as c; f = c.load_corpus\n"
          "def slow(*a, **k):\n    time.sleep(float(os.environ.get('SLOW', '0'))); return f(*a, **k)\n"
          "c.load_corpus = slow\n"
          "from bnvae_core.config import TrainConfig\nfrom bnvae_core.training.cache import cached_run\n"
          "cached_run(TrainConfig.from_json(sys.argv[2]), root=sys.argv[1], progress=False)\n")


def write_corpus(root: Path, n_train: int = 120, n_eval: int = 30, seed: int = 0, vocab: int = 40) -> Path:
    """Zipf-distributed words w0 … w{vocab-1}, 3–10 a line."""
    r = random.Random(seed)
    words, weights = [f"w{i}" for i in range(vocab)], [1 / (i + 1) for i in range(vocab)]
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("valid", n_eval), ("test", n_eval)):
        lines = (" ".join(r.choices(words, weights, k=r.randint(3, 10))) for _ in range(n))
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def append_reranking_lines(corpus: Path, n: int = 300) -> None:
    """Lines of words already in train.txt, but the rarest ones: the vocabulary keeps its size and
    its words, and their ranks (the ids) change."""
    counts: dict[str, int] = {}
    for word in (corpus / "train.txt").read_text().split():
        counts[word] = counts.get(word, 0) + 1
    rare = sorted(counts, key=lambda w: (counts[w], w))[:10]
    with open(corpus / "train.txt", "a") as fh:
        fh.write("".join(" ".join(random.Random(i).choices(rare, k=8)) + "\n" for i in range(n)))


def tiny(data: Path, **changes) -> TrainConfig:
    values = dict(model="bnvae", data=str(data), max_train=None, max_eval=None, emb_dim=8, hidden_dim=8, nz=2,
                  epochs=1, batch_size=16, device="cpu")
    return TrainConfig(**{**values, **changes})


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    """Every test here on one torch thread (tests/conftest.py)."""


@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_corpus(tmp_path / "corpus")


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def popen(args, cwd, **env):
    return subprocess.Popen(args, cwd=cwd, env={**ENV, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


# --- 1. two processes, one folder ------------------------------------------------------------------

def test_two_trainings_into_one_out_one_wins_and_nothing_is_lost(corpus, tmp_path):
    """Issue 17.1: both pass the start together (corpus loading slowed); the loser stops at once naming
    the folder and the process that holds it, removes nothing; the winner finishes its run."""
    out = tmp_path / "run"
    procs = [popen([sys.executable, "-c", SLOW, "train", "--data", str(corpus), "--out", str(out), *TINY_FLAGS],
                   tmp_path) for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert sorted(rc for rc, _, _ in results) == [0, 2], results
    loser = one_error_line(next(err for rc, _, err in results if rc == 2))
    assert str(out) in loser and "in use by process" in loser
    assert {"model.pt", "summary.json", "config.json", "vocab.txt", "data.json"} <= {p.name for p in out.iterdir()}
    assert not (out / FolderLock.NAME).exists()
    # two --resume of the finished folder at once: one continues, the other is refused (no lock left behind)
    procs = [popen([sys.executable, "-c", SLOW, "train", "--resume", str(out), "--epochs", str(e), "--no-progress"],
                   tmp_path) for e in (3, 2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert sorted(rc for rc, _, _ in results) == [0, 2], results
    assert "in use by process" in one_error_line(next(err for rc, _, err in results if rc == 2))
    winner = json.loads(next(out_ for rc, out_, _ in results if rc == 0).strip().splitlines()[-1])
    assert json.loads((out / "summary.json").read_text())["epochs"] == winner["epochs"]
    assert TrainConfig.load(out / "config.json").epochs == winner["epochs"]


def test_a_failed_training_removes_only_what_it_wrote(corpus, tmp_path):
    bad = write_corpus(tmp_path / "bad")
    (bad / "valid.txt").write_bytes(b"\xff\xfe broken\n")
    new = tmp_path / "a" / "b" / "run"                      # created here, with two parents
    with pytest.raises(Exception, match=r"valid\.txt"):
        train(tiny(bad), new, progress=False)
    assert not (tmp_path / "a").exists()
    given = tmp_path / "given"                               # the user's empty folder stays, empty
    given.mkdir()
    with pytest.raises(Exception, match=r"valid\.txt"):
        train(tiny(bad), given, progress=False)
    assert given.is_dir() and list(given.iterdir()) == []
    held = tmp_path / "held"                                  # a folder held by someone else is never touched
    held.mkdir()
    with FolderLock(held, "training run"):
        with pytest.raises(FolderInUseError, match="in use by process"):
            train(tiny(corpus), held, progress=False)
        assert [p.name for p in held.iterdir()] == [FolderLock.NAME]
    assert list(held.iterdir()) == []


# --- 2. the vocabulary and the data fingerprint --------------------------------------------------------

def test_a_changed_corpus_is_refused_and_never_served_from_the_cache(corpus, tmp_path, capsys):
    """Issue 17.2: the run folder stores vocab.txt and data.json; a corpus whose new lines re-rank the
    vocabulary (same size) is refused by load_run and --resume, naming the file that changed;
    evaluate --data reads other text with the stored vocabulary and says how much became <unk>;
    cached_run's key holds the data digest, so the changed corpus gets a new entry, not the stale one."""
    config = tiny(corpus)
    run = train(config, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "vocab.txt").read_text().split("\n")[:-1] == run.corpus.vocab.itos
    record = json.loads((tmp_path / "run" / "data.json").read_text())
    assert record["path"] == str(corpus.resolve()) and set(record["files"]) == {"train.txt", "valid.txt", "test.txt"}
    first = cached_run(config, root=tmp_path / "cache", progress=False)
    append_reranking_lines(corpus)
    with pytest.raises(RunError, match=r"no longer gives the vocabulary .*train\.txt \(sha256"):
        load_run(tmp_path / "run")
    with pytest.raises(RunError, match="train.txt"):
        train(config.replace(epochs=2), tmp_path / "run", resume=True, progress=False)
    other = write_corpus(tmp_path / "other", seed=5, vocab=80)
    assert main(["evaluate", str(tmp_path / "run"), "--data", str(other), "--iw-samples", "2", "--no-progress"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert 0 < result["unk_fraction"] < 1 and f"{100 * result['unk_fraction']:.1f}% of the tokens" in captured.err
    second = cached_run(config, root=tmp_path / "cache", progress=False)
    assert second.path != first.path and entry_name(config) == second.path.name
    assert list(second.corpus.vocab.itos) != list(first.corpus.vocab.itos)
    # test.txt changed but the vocabulary did not: loaded, with a one-line warning naming the file
    with open(corpus / "test.txt", "a") as fh:
        fh.write("w1 w2 w3\n")
    with pytest.warns(BnvaeWarning, match=r"test\.txt .*vocabulary is the same"):
        load_run(second.path)


def test_a_relative_data_path_is_read_from_where_the_run_was_trained(tmp_path, monkeypatch, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_corpus(tmp_path / "a" / "corp")
    write_corpus(tmp_path / "b" / "corp", seed=7)            # the same name, another corpus
    monkeypatch.chdir(tmp_path / "a")
    run = train(tiny("corp"), tmp_path / "run", progress=False)
    in_a = cached_run(tiny("corp"), root=tmp_path / "cache", progress=False)
    monkeypatch.chdir(tmp_path / "b")
    assert load_run(tmp_path / "run").corpus.vocab.itos == run.corpus.vocab.itos      # a's corpus, from b
    in_b = cached_run(tiny("corp"), root=tmp_path / "cache", progress=False)
    assert in_b.path != in_a.path and in_a.path.is_dir()                               # no flip-flop
    shutil.rmtree(tmp_path / "a" / "corp")
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(tmp_path / "run"), "--iw-samples", "2", "--no-progress"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "config.json" in line and f"relative to {tmp_path / 'a'}, where the run was trained" in line


def test_the_in_process_corpus_memo_sees_a_changed_file(corpus):
    from bnvae_core.methods import make_method
    before = make_method(tiny(corpus)).load_corpus()
    with open(corpus / "train.txt", "a") as fh:
        fh.write("w1 w2 w3\n" * 50)
    after = make_method(tiny(corpus)).load_corpus()
    assert len(after.train) == len(before.train) + 50


# --- 3. what the operating system refuses ------------------------------------------------------------

def _mount_tmpfs(path: Path, size_kib: int) -> str | None:
    """Mount a tmpfs at ``path``; None on success, else why not."""
    if shutil.which("mount") is None:
        return "no mount(8) on this system"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)],
                       capture_output=True, text=True)
    return None if r.returncode == 0 else \
        f"cannot mount a tmpfs ({r.stderr.strip() or r.returncode}); it needs root or CAP_SYS_ADMIN"


@pytest.fixture
def small_disk(tmp_path):
    """(mount point, fill): a 2 MiB tmpfs; ``fill(kib)`` leaves about ``kib`` KiB free."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    why = _mount_tmpfs(mnt, 2048)
    if why:
        pytest.skip(why)

    def fill(free_kib: float) -> None:
        (mnt / "fill").unlink(missing_ok=True)
        st = os.statvfs(mnt)
        (mnt / "fill").write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - int(free_kib * 1024)))
    try:
        yield mnt, fill
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_is_one_line_and_leaves_nothing_half_written(small_disk, corpus, tmp_path, capsys):
    """Issue 17.3 on a real full disk: the first checkpoint does not fit (the folder is removed), then
    only model.pt does not fit (the checkpoint stays, the message says how to continue); cached_run
    names the cache folder and leaves no temporary folder."""
    mnt, fill = small_disk
    args = ["train", "--data", str(corpus), *TINY_FLAGS]
    reference = train(tiny(corpus), tmp_path / "ref", progress=False)
    kib = {p.name: -(-p.stat().st_size // 4096) * 4 for p in reference.path.iterdir()}   # tmpfs pages
    small = kib["config.json"] + kib["vocab.txt"] + kib["data.json"] + 2 * kib["metrics.jsonl"]
    assert kib["checkpoint.pt"] > 8 and kib["model.pt"] > 8
    fill(small + 4)
    assert main([*args, "--out", str(mnt / "run")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "checkpoint.pt" in line and "no space left on device" in line and "nothing was kept" in line
    assert not (mnt / "run").exists()
    fill(small + kib["checkpoint.pt"] + 4)
    assert main([*args, "--out", str(mnt / "run")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "model.pt" in line and "no space left on device" in line and f"train --resume {mnt / 'run'}" in line
    assert (mnt / "run" / "checkpoint.pt").is_file() and not (mnt / "run" / "model.pt").exists()
    (mnt / "fill").unlink()
    assert main(["train", "--resume", str(mnt / "run"), "--no-progress"]) == 0          # as the message says
    capsys.readouterr()
    fill(4)
    with pytest.raises(StorageError, match=f"{mnt / 'cache'}: cannot write the cache entry .*no space left"):
        cached_run(tiny(corpus), root=mnt / "cache", progress=False)
    assert list((mnt / "cache").iterdir()) == []


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder this process cannot write into (``chattr +i`` as root, else ``chmod 555``)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(ro)]).returncode:
            pytest.skip("root, and chattr +i is not available: no folder is read-only to root")
        yield ro
        subprocess.run(["chattr", "-i", str(ro)], check=False)
    else:
        ro.chmod(0o555)
        yield ro
        ro.chmod(0o755)


@pytest.mark.parametrize("where", ["read-only", "parent is a file", "name too long", "/proc"])
def test_impossible_output_folders_are_one_line_before_any_work(where, read_only_dir, corpus, tmp_path, capsys,
                                                                monkeypatch):
    (tmp_path / "afile").write_text("x")
    out = {"read-only": read_only_dir / "run", "parent is a file": tmp_path / "afile" / "run",
           "name too long": tmp_path / "x" / ("n" * 300), "/proc": Path("/proc/self/nope/run")}[where]
    import bnvae_core.training.loop as loop
    monkeypatch.setattr(loop.Trainer, "__init__", lambda *a, **k: pytest.fail("work started"))
    assert main(["train", "--data", str(corpus), *TINY_FLAGS, "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    expected = {"read-only": ("not writable",), "parent is a file": ("is a file, not a folder",),
                "name too long": ("file name too long",), "/proc": ("no such file", "not writable")}[where]
    assert any(text in line for text in expected), line
    assert not (tmp_path / "x").exists()
    # the same through cached_run and compare's --cache: one StorageError naming the folder
    with pytest.raises(StorageError, match=str(out.parent if where != "name too long" else out)[:40]):
        cached_run(tiny(corpus), root=out, progress=False)


def test_a_run_folder_that_cannot_be_written_is_refused_before_resuming(corpus, tmp_path, capsys):
    run = train(tiny(corpus), tmp_path / "run", progress=False).path
    root = os.geteuid() == 0
    if root and (shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(run)]).returncode):
        pytest.skip("root, and chattr +i is not available: no folder is read-only to root")
    if not root:
        run.chmod(0o555)
    try:
        assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
        assert "not writable" in one_error_line(capsys.readouterr().err)
        assert TrainConfig.load(run / "config.json").epochs == 1
    finally:
        subprocess.run(["chattr", "-i", str(run)], check=False) if root else run.chmod(0o755)


# --- 4. unclear messages, strict JSON, orphans ---------------------------------------------------------

class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {_Evil.marker}",))


@pytest.mark.parametrize("kind", ["pickle in zip", "legacy pickle", "raw pickle", "truncated", "empty", "random"])
def test_hostile_and_corrupt_checkpoints_are_one_line_and_never_run(kind, corpus, tmp_path, capsys):
    run = train(tiny(corpus), tmp_path / "run", progress=False)
    model = run.path / "model.pt"
    _Evil.marker = tmp_path / "PWNED"
    good = model.read_bytes()
    if kind == "pickle in zip":
        torch.save({"encoder.embed.weight": _Evil()}, model)
    elif kind == "legacy pickle":
        torch.save({"x": _Evil()}, model, _use_new_zipfile_serialization=False)
    elif kind == "raw pickle":
        model.write_bytes(pickle.dumps(_Evil()))
    else:
        model.write_bytes({"truncated": good[: len(good) // 2], "empty": b"", "random": os.urandom(3000)}[kind])
    assert main(["evaluate", str(run.path), "--iw-samples", "2", "--no-progress"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{model}: not a valid checkpoint" in line and "not loaded" in line and "weights_only" not in line
    if "pickle" in kind:
        assert "non-tensor object" in line or "objects other than tensors" in line
    assert not _Evil.marker.exists()


def test_no_finite_validation_loss_is_an_error_not_an_untrained_model(corpus, tmp_path, monkeypatch):
    from bnvae_core.methods.base import Method
    original = Method.validation_row
    monkeypatch.setattr(Method, "validation_row", lambda *a, **k: {**original(*a, **k), "loss": float("nan")})
    with pytest.raises(NonFiniteLossError, match="no epoch had a finite validation loss.*model.pt not written"):
        train(tiny(corpus, epochs=2), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "model.pt").exists()
    text = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "NaN" not in text and all(r["loss"] is None for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")
                                     if r.get("split") == "valid")
    write_jsonl(tmp_path / "x.jsonl", [{"a": float("inf")}])
    assert json.loads((tmp_path / "x.jsonl").read_text(), parse_constant=pytest.fail) == {"a": None}


def test_flags_that_cannot_apply_are_refused_in_one_line(corpus, tmp_path, capsys):
    run = train(tiny(corpus), tmp_path / "run", progress=False)
    cases = [["train", "--resume", str(run.path), "--out", str(tmp_path / "x")],
             ["train", "--data", str(corpus), *TINY_FLAGS, "--epochs", "0", "--out", str(tmp_path / "z")],
             ["train", "--data", str(corpus), *TINY_FLAGS[:-3], "--hidden-dim", "20000000",
              "--out", str(tmp_path / "h")]]
    for device in ("nonsense", "cuda:7", "cpu:0"):
        cases += [["train", "--data", str(corpus), *TINY_FLAGS[:-3], "--device", device, "--out", str(tmp_path / "d")],
                  ["evaluate", str(run.path), "--device", device], ["generate", str(run.path), "--device", device],
                  ["classify", str(run.path), "--labels", "10", "--device", device],
                  ["bench", "--data", str(corpus), "--steps", "1", "--device", device],
                  ["converge", "--data", str(corpus), "--device", device, "--out", str(tmp_path / "c")],
                  ["compare", "--data", str(corpus), "--device", device, "--out", str(tmp_path / "c")],
                  ["sweep", "--data", str(corpus), "--device", device, "--out", str(tmp_path / "c")],
                  ["reproduce", "--dataset", str(corpus), "--smoke", "--device", device, "--out", str(tmp_path / "c")]]
    for args in cases:
        assert main(args) == 2, args
        one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "run"]     # no folder left by a refusal


def test_the_temporary_folder_of_a_killed_cached_run_is_removed(corpus, tmp_path):
    root = tmp_path / "cache"
    proc = popen([sys.executable, "-c", CACHED, str(root), tiny(corpus).to_json()], tmp_path, SLOW="60")
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".") for p in root.glob("*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    orphans = [p.name for p in root.iterdir()]
    assert len(orphans) == 1 and f"-{proc.pid}-" in orphans[0]
    with pytest.warns(BnvaeWarning, match=f"removed .*process {proc.pid}.* killed"):
        run = cached_run(tiny(corpus), root=root, progress=False)
    assert [p.name for p in root.iterdir()] == [run.path.name]


@pytest.mark.parametrize("command", ["compare", "sweep", "evaluate", "classify"])
def test_interrupted_commands_say_what_they_kept(command, corpus, tmp_path, capsys, monkeypatch):
    """Issue 17.4/6: Ctrl-C in a command that is not `train` names what is kept and what to run next."""
    grid = ["--data", str(corpus), "--max-train", "0", "--max-eval", "0", "--emb-dim", "8", "--hidden-dim", "8",
            "--nz", "2", "--epochs", "1", "--device", "cpu", "--cache", str(tmp_path / "cache"), "--no-progress",
            "--out", str(tmp_path / "out")]
    calls = {"n": 0}
    real = cache_module.cached_run

    def second_call_interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    import bnvae_core.experiments.compare as compare_module
    import bnvae_core.experiments.sweep as sweep_module
    monkeypatch.setattr(compare_module, "cached_run", second_call_interrupted)
    monkeypatch.setattr(sweep_module, "cached_run", second_call_interrupted)
    if command in ("compare", "sweep"):
        models = ["--models", "vae,bnvae", "--gammas", "0.6", "--seeds", "1", "--iw-samples", "2"] \
            if command == "compare" else ["--methods", "vae", "bnvae"]
        assert main([command, *models, *grid]) == 130
        err = capsys.readouterr().err
        what = "runs" if command == "compare" else "trials"
        assert f"interrupted: 1 of 2 {what} are cached in {tmp_path / 'cache'}" in err
        assert "run the same command again" in err
        assert not (tmp_path / "out").exists()                 # created for the command, removed: nothing written
        return
    import bnvae_core.cli.commands.classify as classify_command
    import bnvae_core.cli.commands.evaluate as evaluate_command

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(evaluate_command, "load_run", interrupted)
    monkeypatch.setattr(classify_command, "load_run", interrupted)
    assert main([command, str(tmp_path), *(["--labels", "10"] if command == "classify" else [])]) == 130
    expected = {"evaluate": "interrupted: nothing was written (evaluate writes no files)",
                "classify": "interrupted: classify stopped; nothing was written"}
    assert capsys.readouterr().err.strip() == expected[command]


def test_an_interrupted_notebook_leaves_no_half_executed_copy(tmp_path, monkeypatch):
    from bnvae_core.errors import CommandInterrupted
    from bnvae_core.experiments import figures
    papermill = pytest.importorskip("papermill")

    def interrupted(source, output, **kwargs):
        Path(output).write_text("{half")
        raise KeyboardInterrupt
    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    (tmp_path / "nb").mkdir()
    (tmp_path / "nb" / "01_x.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                                              "nbformat_minor": 5}))
    with pytest.raises(CommandInterrupted, match="figures stopped in 01_x.ipynb"):
        figures.run_all(tmp_path / "nb", smoke=True, figures_dir=tmp_path / "figs", executed_dir=tmp_path / "exe")
    assert [p.name for p in (tmp_path / "exe").iterdir() if p.suffix == ".ipynb"] == []


# --- 5. datasets verified with a manifest ---------------------------------------------------------------

def _archive(path: Path, train: bytes = b"a b c\nd e f\n") -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in (("fake_data/fake.train.txt", train), ("fake_data/fake.valid.txt", b"a b\n"),
                           ("fake_data/fake.test.txt", b"c d\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


def test_datasets_are_verified_with_a_manifest(tmp_path, monkeypatch, capsys):
    """Issue 17.5: the first build records the sha256 of the archive, of every extracted file and of
    every corpus file (and prints the archive's); a changed corpus file, a changed archive and a junk
    archive placed by hand are each one error naming the file, and the user's file is kept."""
    spec = hub.DatasetSpec(name="fake", urls=["http://127.0.0.1:9/never.tar.gz"], sha256=None,
                           archive="fake_data.tar.gz", licence="test", preset={},
                           layout={s: (f"fake_data/fake.{s}.txt",) for s in ("train", "valid", "test")})
    monkeypatch.setitem(hub.REGISTRY, "fake", spec)
    monkeypatch.setenv("BNVAE_DATA", str(tmp_path / "hub"))
    archive = _archive(tmp_path / "hub" / "downloads" / "fake_data.tar.gz")
    target = hub.fetch_dataset("fake", progress=False)
    manifest = json.loads(hub.manifest_path("fake").read_text())
    assert manifest["archive_sha256"] == hub.file_sha256(archive) in capsys.readouterr().err
    assert set(manifest["files"]) == {"train.txt", "valid.txt", "test.txt"} and len(manifest["extracted"]) == 3
    assert hub.fetch_dataset("fake") == target                               # verified, unchanged
    (target / "train.txt").write_text("a b c\n")                             # truncated after the build
    with pytest.raises(DatasetUnavailableError, match=r"train\.txt: changed since the dataset was built"):
        hub.fetch_dataset("fake")
    shutil.rmtree(target)
    _archive(archive, train=b"x y z\n")                                       # another archive, same name
    with pytest.raises(ArchiveError, match="differs from .* recorded when 'fake' was first built"):
        hub.fetch_dataset("fake", progress=False)
    archive.write_text("junk\n")
    hub.manifest_path("fake").unlink()
    with pytest.raises(ArchiveError, match="placed by hand.*not a zip or tar archive; not used"):
        hub.fetch_dataset("fake", progress=False)
    assert archive.read_text() == "junk\n"                                    # the user's file is kept
    readme = (REPO / "README.md").read_text()
    assert "manifest" in readme and "not verified" in readme


# --- 6. more of the same, elsewhere ------------------------------------------------------------------

def test_output_folders_are_checked_before_training_and_held_while_written(corpus, tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("x")
    import bnvae_core.experiments.compare as compare_module
    monkeypatch.setattr(compare_module, "cached_run", lambda *a, **k: pytest.fail("trained before the check"))
    sizes = ["--data", str(corpus), "--seeds", "1", "--max-train", "0", "--emb-dim", "8", "--hidden-dim", "8",
             "--nz", "2", "--epochs", "1", "--device", "cpu"]
    grid = [*sizes, "--models", "vae", "--no-progress", "--cache", str(tmp_path / "cache")]
    assert main(["compare", *grid, "--out", str(tmp_path / "afile" / "cmp")]) == 2
    assert "is a file, not a folder" in one_error_line(capsys.readouterr().err)
    sweep = ["sweep", "--methods", "vae", "--cache", str(tmp_path / "cache")]
    for command in (sweep, ["converge", "--methods", "vae"]):
        assert main([*command, *sizes, "--out", str(tmp_path / "afile" / "o")]) == 2, command
        assert "is a file, not a folder" in one_error_line(capsys.readouterr().err)
    (tmp_path / "busy").mkdir()
    with FolderLock(tmp_path / "busy", "compare output folder being written"):
        assert main(["compare", *grid, "--out", str(tmp_path / "busy")]) == 2
        assert "in use by process" in one_error_line(capsys.readouterr().err)
    monkeypatch.setenv("BNVAE_CACHE", str(tmp_path / "afile"))
    with pytest.raises(StorageError, match=r"afile: exists and is not a folder \(cache folder \(\$BNVAE_CACHE\)\)"):
        cached_run(tiny(corpus), progress=False)


def test_damaged_run_files_are_errors_naming_them(corpus, tmp_path):
    run = train(tiny(corpus), tmp_path / "run", progress=False)
    (run.path / "summary.json").write_text("{broken")
    with pytest.raises(RunError, match="summary.json: cannot read the run summary"):
        load_run(run.path).summary()
    (run.path / "data.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(RunError, match=r"data.json: not a valid data record of the run \(JSON nested too deeply\)"):
        load_run(run.path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ConfigError, match="device"):
            TrainConfig(device="gpu")


def test_ctrl_c_while_the_command_starts_up_is_one_line(monkeypatch, capsys):
    """Ctrl-C during the imports (seconds on a busy machine) is one line and exit 130, no traceback."""
    import importlib.abc

    import bnvae_core.__main__ as entry

    class Interrupting(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "bnvae_core.cli.main":
                raise KeyboardInterrupt
            return None
    monkeypatch.delitem(sys.modules, "bnvae_core.cli.main", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    assert entry.main() == 130
    assert capsys.readouterr().err == "interrupted while starting up: nothing was done\n"
