"""The chapters' parameter checks (sdlib.params): allowed values pass, bad ones are named with the rule."""
import math

import numpy as np
import pytest

from sdlib.params import Allowed, check_parameters, flag, integer, number, one_of, text

SPEC = {
    "L": integer(6, 1024, even=True),
    "n_seeds": integer(1, 64),
    "seed": integer(0),
    "dt": number(0.0, 0.2, lo_open=True),
    "kT": number(0.0, 0.1),
    "precision": one_of("float64", "float32"),
    "clock": one_of("cpu", "wall", "gpu"),
    "out_dir": text("a folder (str), or empty"),
    "use_shipped_model": flag(),
}
GOOD = dict(L=32, n_seeds=1, seed=0, dt=0.05, kT=0, precision="float32", clock="wall", out_dir="",
            use_shipped_model=False)


def test_good_values_are_returned_in_the_order_of_the_spec():
    values = GOOD | {"unrelated": object()}
    assert list(check_parameters(values, SPEC).items()) == [(k, GOOD[k]) for k in SPEC]
    # ends of closed intervals are allowed, numpy scalars count as numbers
    assert check_parameters({"kT": np.float64(0.1), "L": np.int64(6)}, {"kT": SPEC["kT"], "L": SPEC["L"]})


@pytest.mark.parametrize("name, value, message", [
    ("L", 31, "L must be an even integer in [6, 1024], got 31"),
    ("L", 32.0, "L must be an even integer in [6, 1024], got 32.0"),
    ("L", 2048, "L must be an even integer in [6, 1024], got 2048"),
    ("n_seeds", True, "n_seeds must be an integer in [1, 64], got True"),
    ("seed", -1, "seed must be an integer >= 0, got -1"),
    ("dt", 0.0, "dt must be a number in (0, 0.2], got 0.0"),
    ("dt", math.nan, "dt must be a number in (0, 0.2], got nan"),
    ("kT", "0.01", "kT must be a number in [0, 0.1], got '0.01'"),
    ("precision", "float16", "precision must be 'float64' or 'float32', got 'float16'"),
    ("clock", "CPU", "clock must be one of 'cpu', 'wall', 'gpu', got 'CPU'"),
    ("out_dir", None, "out_dir must be a folder (str), or empty, got None"),
    ("use_shipped_model", 1, "use_shipped_model must be True or False, got 1"),
])
def test_a_bad_value_is_named_with_the_allowed_range(name, value, message):
    with pytest.raises(ValueError) as err:
        check_parameters(GOOD | {name: value}, SPEC)
    assert str(err.value) == message


def test_every_bad_parameter_is_reported_at_once():
    with pytest.raises(ValueError) as err:
        check_parameters(GOOD | {"L": 7, "kT": -0.1}, SPEC)
    assert str(err.value) == "L must be an even integer in [6, 1024], got 7; kT must be a number in [0, 0.1], got -0.1"


def test_a_missing_parameter_and_a_note():
    spec = {"t_fit": number(0.25, 96.0, note="dt to 0.8 t_big"), "n_steps": integer(10, 100_000)}
    with pytest.raises(ValueError) as err:
        check_parameters({"t_fit": 100.0}, spec)
    assert str(err.value) == ("t_fit must be a number in [0.25, 96] (dt to 0.8 t_big), got 100.0; "
                              "n_steps must be set (an integer in [10, 100000])")


def test_rules_without_bounds_and_bad_specs():
    assert number().text == "a finite number" and not number().accepts(math.inf)
    assert integer(hi=5).text == "an integer <= 5" and number(lo=0, lo_open=True).text == "a number > 0"
    assert one_of(1).accepts(1) and not one_of(1).accepts(True)
    assert isinstance(text(), Allowed) and text().text == "a string"
    with pytest.raises(ValueError, match="at least one"):
        one_of()
    with pytest.raises(TypeError, match="rule for L"):
        check_parameters({"L": 8}, {"L": (6, 1024)})
