"""The registries: every option of every estimator and likelihood is typed, and checked by type in
one place, so a value of the wrong kind is a ConfigError naming it, whichever class it is for."""

import numpy as np
import pytest

from pyrovae import ConfigError
from pyrovae.estimators.base import REGISTRY as ESTIMATORS
from pyrovae.likelihoods.base import REGISTRY as LIKELIHOODS
from pyrovae.registry import conform, option_types

CLASSES = [(reg, name) for reg in (ESTIMATORS, LIKELIHOODS) for name in reg.names()]
IDS = [f"{reg.kind}-{name}" for reg, name in CLASSES]


def _make(reg, name, **options):
    implicit = {"x_dim": 3} if reg is LIKELIHOODS else {}
    return reg.make(name, **implicit, **options)


@pytest.mark.parametrize("reg, name", CLASSES, ids=IDS)
def test_every_option_has_a_type_the_registry_checks(reg, name):
    hints = option_types(reg.get(name))
    untyped = [k for k, hint in hints.items() if conform(object(), hint)[0]]
    assert untyped == [], f"{reg.kind} {name!r}: options the registry cannot check: {untyped}"


@pytest.mark.parametrize("reg, name", CLASSES, ids=IDS)
def test_a_value_of_the_wrong_kind_is_a_config_error_for_every_option(reg, name):
    for option in reg.options(name):
        # what TOML and the CLI can give: a word, a number, a flag, a list, a table
        for value in ("abc", 2.5, True, [1], {"a": 1}):
            try:
                _make(reg, name, **{option: value})
            except ConfigError as e:
                assert "\n" not in str(e)
            # any other exception fails the test: a TypeError deep inside a class is a traceback


@pytest.mark.parametrize(
    "value, hint, ok, out",
    [
        (1, float, True, 1.0),  # lossless: an int where a float is wanted
        (1.5, int, False, 1.5),  # never rounded
        (True, int, False, True),  # a bool is not a number here
        (float("inf"), float, False, float("inf")),
        (2, int | None, True, 2),
        (None, float | None, True, None),
        ("per_dim", float | str | None, True, "per_dim"),
        (0.5, float | str | None, True, 0.5),
        ([1, 2.0], list[float], True, [1.0, 2.0]),
        ([1, "a"], list[int], False, [1, "a"]),
        (np.int64(3), int, True, 3),  # x_dim=np.prod(shape)
        (np.float32(0.5), float, True, 0.5),
        (np.bool_(True), int, False, np.bool_(True)),
    ],
)
def test_conform(value, hint, ok, out):
    assert conform(value, hint) == (ok, out)


def test_the_message_names_the_class_the_option_and_the_type():
    with pytest.raises(
        ConfigError, match=r"^estimator 'renyi': option alpha needs a finite number \(float\), got 'a'$"
    ):
        ESTIMATORS.make("renyi", alpha="a")
    with pytest.raises(
        ConfigError, match=r"option scale needs a finite number \(float\) or a string \(str\), got \[1\]"
    ):
        LIKELIHOODS.make("gaussian", x_dim=3, scale=[1])
