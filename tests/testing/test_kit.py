"""pyrovae.testing: every built-in estimator and likelihood passes the kit; each planted fault
fails it, in the check that names the fault, with a message that says what is wrong."""

import pytest

from pyrovae import likelihoods
from pyrovae.testing import CheckFailed, check_estimator, check_likelihood, estimator_checks

from ..conformance.cases import CASES

WORKER = ("runs_in_a_worker",)  # a process a check: run for a few below, not for every case
PYRO_CASES = {"pyro.Trace_ELBO": ("pyro.Trace_ELBO", {}), "pyro.TraceMeanField_ELBO": ("pyro.TraceMeanField_ELBO", {})}


@pytest.mark.parametrize("case", [*CASES, *PYRO_CASES])
def test_every_builtin_estimator_passes_the_kit(case):
    name, options = {**CASES, **PYRO_CASES}[case]
    report = check_estimator(name, skip=WORKER, draws=40, **options)
    assert report.passed, str(report)
    ran = {o.check for o in report.outcomes if o.status == "passed"}
    assert {"loss_is_the_bound", "plate_forms_agree", "subsample_size", "exact_at_the_posterior"} <= ran


def test_the_declarations_decide_what_is_skipped():
    skipped = lambda r: {o.check for o in r.outcomes if o.status == "skipped"}  # noqa: E731
    assert skipped(check_estimator("rws", skip=WORKER, draws=30)) == {"gradient_unbiased", *WORKER}
    assert skipped(check_estimator("renyi", alpha=-1.0, skip=WORKER, draws=30)) == {"lower_bound", *WORKER}
    assert skipped(check_estimator("dreg", kl_weight=0.5, skip=WORKER, draws=30)) == {"gradient_unbiased", *WORKER}


@pytest.mark.parametrize("name", ["iwae", "pyro.Trace_ELBO"])
def test_a_builtin_runs_in_a_spawned_worker(name):
    (check,) = [c for c in estimator_checks(name) if c.id == "runs_in_a_worker"]
    assert "computes the same loss" in check()


PLANTED = {  # class: (the check that must fail, words its message must hold)
    "SurrogateLoss": ("loss_is_the_bound", "never a surrogate"),
    "ScaleInsideLogsumexp": ("plate_forms_agree", "outside every logsumexp"),
    "UndeclaredBias": ("gradient_unbiased", "not the gradient of the iwae it declares"),
    "BreaksUnderSubsampleSize": ("subsample_size", "under subsample_size the mean loss"),
    "Unpicklable": ("pickles", "does not pickle"),
    "VarGradOverK": ("gradient_unbiased", "not the gradient of the elbo it declares"),
}


@pytest.mark.parametrize("cls", PLANTED)
def test_a_planted_fault_fails_with_a_message_that_names_it(cls):
    check, words = PLANTED[cls]
    draws = 200 if cls == "VarGradOverK" else 100  # a bias of (K - 1) / K needs the kit's default draws
    report = check_estimator(f"tests.testing.planted:{cls}", skip=WORKER, draws=draws)
    failed = {o.check: o.detail for o in report.failures}
    assert check in failed, str(report)
    assert words in failed[check] and f"planted:{cls}" in failed[check], failed[check]
    assert set(failed) <= {check, "loss_is_the_bound", "exact_at_the_posterior"}, str(report)  # nothing spurious


def test_pyros_renyi_elbo_is_caught_scaling_inside_its_logsumexp():
    report = check_estimator("pyro.RenyiELBO", alpha=0.5, skip=WORKER)
    failed = {o.check: o.detail for o in report.failures}
    assert "outside every logsumexp" in failed["plate_forms_agree"]
    assert "has no differentiable_loss" in failed["is_a_pyro_elbo"]


def test_the_report_reads_and_raises():
    report = check_estimator("tests.testing.planted:UndeclaredBias", skip=WORKER, draws=100)
    text = str(report)
    assert text.splitlines()[0].endswith("1 FAILED") and "passed  lower_bound" in text
    with pytest.raises(CheckFailed, match="declare unbiased_gradient = False"):
        report.raise_for_failures()
    with pytest.raises(ValueError, match="no check 'nope'; the checks: is_a_pyro_elbo"):
        check_estimator("elbo", skip=("nope",))


@pytest.mark.parametrize("check", estimator_checks("tests.testing.planted:UndeclaredBias", draws=100), ids=str)
def test_the_checks_parametrize_a_users_suite(check):
    if check.id == "gradient_unbiased":
        with pytest.raises(CheckFailed, match="coordinate"):
            check()
    elif check.id != "runs_in_a_worker":
        check()


LIKELIHOOD_CASES = [(n, {}) for n in likelihoods.names()] + [
    ("gaussian", {"scale": "per_dim"}), ("gaussian", {"scale": "decoder"}), ("laplace", {"scale": 0.25}),
    ("discretized_logistic", {"scale": "decoder"}),
]  # fmt: skip


@pytest.mark.parametrize("name,options", LIKELIHOOD_CASES, ids=lambda v: str(v))
def test_every_builtin_likelihood_passes_the_kit(name, options):
    report = check_likelihood(name, **options)
    assert report.passed, str(report)


@pytest.mark.parametrize(
    "cls,check,words",
    [
        ("Unnormalized", "normalized", "not 1"),
        ("WrongSampler", "samples_match_log_prob", "describe different distributions"),
        ("AcceptsAnything", "support", "must refuse what log_prob cannot score"),
        ("UntypedOption", "declarative_options", "temperature need a type annotation"),
    ],
)
def test_a_planted_likelihood_fault_fails(cls, check, words):
    report = check_likelihood(f"tests.testing.planted:{cls}")
    failed = {o.check: o.detail for o in report.failures}
    assert set(failed) == {check} and words in failed[check], str(report)
