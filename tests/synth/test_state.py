"""Tests for synth/state.py: the monthly hazard of leaving."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from churnguard.synth.business import DEFAULT_START
from churnguard.synth.clients import draw_population
from churnguard.synth.state import ROLLING, monthly_hazard
from churnguard.synth.timeline import DAY, FAR_DAY, build_calendar


def test_the_monthly_hazard_responds_to_each_driver() -> None:
    cal = build_calendar(DEFAULT_START, 12, 90)
    m0, m1 = int(cal.day[3]), int(cal.day[4])
    one = draw_population(1, cal, np.random.default_rng(0)).risk
    calm = replace(
        one,
        s=np.array([0.0]),
        kind=np.array([0]),
        auto=np.array([False]),
        end_day=np.array([m1 + 200]),  # mid-term
        last_contact=np.array([(m0 - 5) * DAY]),
        last_nps=np.array([8.0]),
        prev_nps=np.array([8.0]),
        price_up=np.array([False]),
    )
    riskier = {
        "contact gap": {"last_contact": np.array([(m0 - 75) * DAY])},
        "detractor": {"last_nps": np.array([3.0]), "prev_nps": np.array([3.0])},
        "falling score": {"prev_nps": np.array([10.0])},
        "open dispute": {"d_new": np.array([1])},
        "overdue invoice": {"l_old": np.array([2])},
        "urgent ticket": {"hi_open": np.array([2])},
        "price increase": {"price_up": np.array([True])},
        "renewal due": {"end_day": np.array([m0 + 12])},
        "rolling contract": {
            "kind": np.array([ROLLING]),
            "end_day": np.array([FAR_DAY]),
        },
        "unhappy (latent)": {"s": np.array([-1.5])},
    }
    base, _ = monthly_hazard(calm, m0, m1)
    assert 0 < base[0] < 0.01
    for name, change in riskier.items():
        hazard, _ = monthly_hazard(replace(calm, **change), m0, m1)
        assert hazard[0] > 1.1 * base[0], name
    at_renewal = replace(calm, end_day=np.array([m0 + 12]))
    auto, _ = monthly_hazard(replace(at_renewal, auto=np.array([True])), m0, m1)
    assert auto[0] < 0.6 * monthly_hazard(at_renewal, m0, m1)[0][0]
