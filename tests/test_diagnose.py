"""The collapse report card (``bnvae_core.diagnose``, ``python -m bnvae_core diagnose``): the
collapsed VAE and the BN-VAE of the session fixtures read as such, the MI estimator's ceiling and
sign warnings, strict JSON that round-trips, the command line's files and errors, the figure's
panels. Few sentences, few decodings, few bootstrap replicates: seconds on 2 cores beyond the
fixtures' training."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from conftest import TINY  # noqa: E402

import bnvae_core  # noqa: E402
from bnvae_core.analysis import diagnose as diag  # noqa: E402
from bnvae_core.analysis.diagnose import Report, aggregate_terms, bootstrap_aggregate, mi_warnings  # noqa: E402
from bnvae_core.cli.main import main  # noqa: E402
from bnvae_core.config import TrainConfig  # noqa: E402
from bnvae_core.errors import BnvaeError, ConfigError  # noqa: E402
from bnvae_core.training.run_folder import Run  # noqa: E402
from bnvae_core.viz.plots import REPORT_CARD_PANELS, report_card  # noqa: E402

#: sentences, greedy decodings per source, bootstrap replicates: small, so the tests stay fast
FAST = dict(sentences=120, n_decode=20, bootstrap=100)


@pytest.fixture(scope="module")
def reports(tiny_vae, tiny_bnvae):
    return {"vae": bnvae_core.diagnose(tiny_vae, **FAST), "bnvae": bnvae_core.diagnose(tiny_bnvae, **FAST)}


def strict_loads(text: str):
    """json.loads that fails on NaN/Infinity tokens (which strict JSON parsers reject)."""
    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=refuse)


# --- the spelling the issue asks for, and a light package import ------------------------------

def test_diagnose_is_a_lazy_attribute_of_the_package():
    assert bnvae_core.diagnose is diag.diagnose
    assert "diagnose" in dir(bnvae_core)
    with pytest.raises(AttributeError):
        bnvae_core.no_such_thing  # noqa: B018
    code = ("import sys, bnvae_core; light = 'torch' not in sys.modules; f = bnvae_core.diagnose; "
            "print(light, 'torch' in sys.modules, f.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "bnvae_core.analysis.diagnose"]


# --- what the report says about the two fixtures ------------------------------------------------

def test_the_vae_reads_as_collapsed(reports):
    r = reports["vae"]
    assert r.verdict == "collapsed" and r.nz == 32 and r.n_sentences == FAST["sentences"]
    assert r.au <= 1 and r.kl < 0.5
    assert abs(r.mi) < 0.05 and r.mi_low < 0.05 < r.mi_ceiling
    assert abs(r.decoding_gap) < 0.5, r.decoding
    assert r.distinct_prior <= 0.2 and r.distinct_posterior <= 0.2, r.decodings
    assert r.decodings.set_index("source").loc["data", "fraction_distinct"] > 0.9
    assert r.gamma is None and r.kl_reference is None


def test_bnvae_reads_as_informative(reports):
    r = reports["bnvae"]
    assert r.verdict == "informative" and r.au == 32
    assert r.mi > 1.0 and r.mi_low > 0.5, (r.mi, r.mi_low, r.mi_high)     # clearly > 0: the interval excludes 0
    assert r.mi_low <= r.mi_high <= r.mi_ceiling + 1e-9
    assert r.decoding_gap > 0.5 and r.decoding_gap > 3 * r.decoding_gap_se, r.decoding
    assert r.distinct_posterior > reports["vae"].distinct_posterior
    assert r.gamma == 0.6 and r.kl_reference == pytest.approx(0.5 * 32 * 0.36)
    assert (r.per_dim["kl"] > 0.05).all() and r.per_dim["active"].all()
    assert r.kl_aggregate > 0 and r.kl_aggregate_low <= r.kl_aggregate_high


def test_numbers_match_their_definitions(reports, tiny_bnvae):
    from bnvae_core.metrics.text import active_units, mutual_information
    for r in reports.values():
        assert r.per_dim["kl"].sum() == pytest.approx(r.kl, rel=1e-6)
        assert list(r.decoding["code"]) == list(diag.CODES)
        posterior = r.decoding.set_index("code")["rec"]
        assert r.decoding_gap == pytest.approx(posterior["prior sample"] - posterior["posterior sample"])
        assert not any("differs from mutual_information" in w for w in r.warnings)
        assert len(r.holes) == r.n_sentences and 0 <= r.hole_fraction <= 1 and 0 <= r.typical_fraction <= 1
    # the same seeded subset as diagnose: its MI and AU are the metrics' own
    split = tiny_bnvae.corpus.splits["test"]
    subset = split.subset(np.random.default_rng(0).permutation(len(split))[:FAST["sentences"]])
    assert reports["bnvae"].mi == mutual_information(tiny_bnvae.model, subset, seed=0)
    assert reports["bnvae"].au == active_units(tiny_bnvae.model, subset)[0]


# --- the MI estimator: its ceiling, its sign, its bootstrap ------------------------------------

def test_aggregate_terms_at_the_two_extremes():
    N = 16
    same = np.tile(np.linspace(-3, -1, N)[:, None], (1, N))          # every posterior equal at every z_n
    mi, _ = aggregate_terms(same, np.zeros(N))
    assert mi == pytest.approx(0.0, abs=1e-12)
    assert bootstrap_aggregate(same, np.zeros(N), 50, 0.95, 0)[:2] == pytest.approx((0.0, 0.0), abs=1e-12)
    apart = np.full((N, N), -1e4)                                      # posteriors that never overlap
    np.fill_diagonal(apart, 0.0)
    mi, _ = aggregate_terms(apart, np.zeros(N))
    assert mi == pytest.approx(math.log(N))
    low, high, _, _ = bootstrap_aggregate(apart, np.zeros(N), 50, 0.95, 0)
    assert low <= high <= math.log(N) + 1e-9       # duplicates lower a replicate's ceiling, never raise it


def test_mi_warnings_fire_near_the_ceiling_and_below_zero():
    N = 100
    assert mi_warnings(1.0, N) == []
    near = mi_warnings(math.log(N) - 0.1, N)
    assert len(near) == 1 and "ceiling log N = 4.61" in near[0] and "more sentences" in near[0]
    assert mi_warnings(math.log(N) - 0.1, N, margin=0.05) == []
    negative = mi_warnings(-0.004, N)
    assert len(negative) == 1 and "negative" in negative[0]


def test_a_real_near_ceiling_case_warns(tiny_bnvae):
    """Eight sentences of an informative model: their posteriors barely overlap, MI ≈ log 8."""
    r = bnvae_core.diagnose(tiny_bnvae, sentences=8, n_decode=4, bootstrap=20)
    assert r.mi_ceiling == pytest.approx(math.log(8)) and r.mi > math.log(8) - diag.MI_MARGIN
    assert any("ceiling" in w for w in r.warnings)


# --- JSON ------------------------------------------------------------------------------------

def test_json_is_strict_and_round_trips(reports):
    for r in reports.values():
        text = r.to_json()
        data = strict_loads(text)
        assert data["model"] == r.model and set(data["tables"]) == set(diag.TABLES)
        back = Report.from_json(text)
        assert back.to_json() == text
        for name in diag.TABLES:
            pd.testing.assert_frame_equal(getattr(back, name), getattr(r, name), check_dtype=False)


def test_non_finite_numbers_become_null_and_come_back_as_nan():
    r = Report(model="m", label="M", run_dir=None, split="test", n_sentences=3, split_sentences=3, seed=0, nz=2,
               posterior="vmf", kl=2.0, mi=float("nan"), decoding_gap=float("inf"),
               per_dim=pd.DataFrame({"dim": [0, 1], "kl": [float("nan")] * 2, "var_mean": [0.5, 0.0],
                                     "active": [True, False]}))
    data = strict_loads(r.to_json())
    assert data["mi"] is None and data["decoding_gap"] is None and data["tables"]["per_dim"]["data"][0][1] is None
    back = Report.from_json(r.to_json())
    assert math.isnan(back.mi) and back.per_dim["kl"].isna().all() and back.per_dim["active"].tolist() == [True, False]
    assert back.to_json() == r.to_json()


# --- models without a latent variable, and conditional ones ------------------------------------

def test_the_lm_report_says_there_is_no_latent(tmp_path):
    from bnvae_core.training.loop import train
    lm = train(TrainConfig(model="lm", **{**TINY, "epochs": 1, "max_train": 200, "max_eval": 40, "emb_dim": 16,
                                          "hidden_dim": 16}), tmp_path / "lm", progress=False)
    r = bnvae_core.diagnose(lm, sentences=20)
    assert r.nz == 0 and r.verdict == "no latent" and r.posterior == "none"
    assert r.kl == r.mi == r.decoding_gap == 0.0 and r.au == 0
    assert any("no latent variable" in w for w in r.warnings)
    assert Report.from_json(r.to_json()).to_json() == r.to_json()
    fig = report_card(r)
    assert [ax.get_label() for ax in fig.axes] == list(REPORT_CARD_PANELS)


def test_conditional_models_are_refused_in_one_sentence():
    fake = Run(TrainConfig(model="cvae"), model=None, corpus=None, path=None, history_rows=[])
    with pytest.raises(ConfigError, match="conditional model") as err:
        bnvae_core.diagnose(fake)
    assert "\n" not in str(err.value) and "evaluate" in str(err.value)


@pytest.mark.parametrize("kwargs", [dict(sentences=-1), dict(sentences=1), dict(bootstrap=0), dict(n_decode=0),
                                    dict(level=1.0), dict(split="nope")])
def test_bad_settings_are_user_errors(tiny_vae, kwargs):
    with pytest.raises(BnvaeError):
        bnvae_core.diagnose(tiny_vae, **kwargs)


# --- the command line ------------------------------------------------------------------------

def test_cli_writes_the_report_and_the_card(tiny_bnvae, tmp_path, capsys):
    out = tmp_path / "card"
    code = main(["diagnose", str(tiny_bnvae.path), "--sentences", "40", "--decode", "5", "--bootstrap", "20",
                 "--out", str(out), "--seed", "1"])
    printed = capsys.readouterr().out
    assert code == 0 and printed.count("\n") == 1
    summary = strict_loads(printed)
    assert summary["model"] == "bnvae" and summary["n_sentences"] == 40 and summary["seed"] == 1
    assert "tables" not in summary and summary["verdict"] == "informative"
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report_card.png", "report_card.svg"]
    assert summary["files"] == [str(out / n) for n in ("report.json", "report_card.png", "report_card.svg")]
    saved = Report.from_json((out / "report.json").read_text())
    assert saved.mi == summary["mi"] and len(saved.holes) == 40
    assert (out / "report_card.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args", [["{tmp}"], ["{tmp}/missing"], ["{run}", "--sentences", "-3"],
                                  ["{run}", "--out", "{tmp}/a-file"]])
def test_cli_errors_are_one_line_and_exit_2(tiny_bnvae, tmp_path, capsys, args):
    (tmp_path / "a-file").write_text("x")
    argv = ["diagnose"] + [a.format(tmp=tmp_path, run=tiny_bnvae.path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


# --- the figure ------------------------------------------------------------------------------

def test_report_card_has_its_panels_and_keeps_legends_off_the_data(reports):
    before = plt.get_fignums()
    for name, r in reports.items():
        fig = report_card(r)
        assert [ax.get_label() for ax in fig.axes] == list(REPORT_CARD_PANELS)
        fig.draw_without_rendering()
        for ax in fig.axes:
            assert ax.get_title() or ax.get_title(loc="left"), ax.get_label()
            legend = ax.get_legend()
            if legend is not None:
                assert not legend.get_window_extent().overlaps(ax.get_window_extent()), (name, ax.get_label())
        panels = {ax.get_label(): ax for ax in fig.axes}
        assert "nats" in panels["per-dimension KL"].get_ylabel() and "nats" in panels["decoding gap"].get_xlabel()
        assert f"{r.au} of 32" in panels["active units"].get_title()
        legend_text = " ".join(t.get_text() for t in panels["per-dimension KL"].get_legend().get_texts())
        assert ("γ²/2" in legend_text) == (name == "bnvae")
        assert r.verdict in panels["summary"].get_title(loc="left")
    assert plt.get_fignums() == before, "report_card registers nothing with pyplot"
