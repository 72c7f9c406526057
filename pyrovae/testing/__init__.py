"""The conformance kit: the contract pyrovae's estimators and likelihoods pass, for yours too.

``check_estimator(name_or_class, **options)`` runs every check of the estimator contract on any
``pyro.infer.ELBO`` (a built-in name, an installed plugin's name, ``package.module:Name``,
``pyro.<ELBO>`` or a class) and returns a :class:`Report`; ``check_likelihood`` does the same for
a likelihood. ``estimator_checks`` and ``likelihood_checks`` return the checks one by one, for a
pytest parametrization in your own test suite::

    import pytest
    from pyrovae.testing import estimator_checks

    @pytest.mark.parametrize("check", estimator_checks("my_module:MyBound", num_particles=5), ids=str)
    def test_my_bound(check):
        check()

The checks run on a linear-Gaussian model with an exact log p(x), an exact posterior and a
closed-form ELBO (:class:`LinearGaussian`), and on pyrovae's VAE in each model family.
"""

from .estimator_checks import check_estimator, estimator_checks
from .likelihood_checks import check_likelihood, likelihood_checks
from .linear_gaussian import LinearGaussian, LinearGaussianGuide, LinearGaussianModel
from .report import Check, CheckFailed, NotApplicable, Outcome, Report

__all__ = [
    "Check",
    "CheckFailed",
    "LinearGaussian",
    "LinearGaussianGuide",
    "LinearGaussianModel",
    "NotApplicable",
    "Outcome",
    "Report",
    "check_estimator",
    "check_likelihood",
    "estimator_checks",
    "likelihood_checks",
]
