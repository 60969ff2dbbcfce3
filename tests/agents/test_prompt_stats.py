"""Scorecard statistics against values computed by hand (formulas in the comments)."""

import math

import pytest

from agents.prompts import stats


def test_wilson_interval_for_8_of_10():
    # p=.8, z=1.96: centre=(.8+z²/20)/(1+z²/10)=.7167, half=z*sqrt(.016+z²/400)/(1+z²/10)=.2266
    ci = stats.wilson(8, 10)
    assert ci.value == pytest.approx(0.8)
    assert ci.low == pytest.approx(0.4902, abs=1e-4)
    assert ci.high == pytest.approx(0.9433, abs=1e-4)
    assert ci.n == 10


def test_wilson_stays_inside_0_and_1_at_the_edges():
    zero, full = stats.wilson(0, 20), stats.wilson(20, 20)
    assert zero.low == 0 and zero.high == pytest.approx(0.1611, abs=1e-4)  # z²/(n+z²)
    assert full.high == 1 and full.low == pytest.approx(0.8389, abs=1e-4)


def test_empty_samples_have_no_value():
    assert stats.wilson(0, 0).value is None
    assert stats.mean_interval([]).value is None
    assert stats.mean_interval([5]).low is None
    assert stats.two_proportion_z(1, 0, 1, 5) is None
    assert stats.welch_t([1], [1, 2]) is None


def test_mean_interval_uses_student_t():
    # mean 3, s²=2.5, se=sqrt(.5)=.7071, t(.975, 4)=2.7764 -> half width 1.9632
    ci = stats.mean_interval([1, 2, 3, 4, 5])
    assert ci.value == 3
    assert ci.low == pytest.approx(1.0368, abs=1e-4)
    assert ci.high == pytest.approx(4.9632, abs=1e-4)


@pytest.mark.parametrize("df, expected", [(1, 12.7062), (4, 2.7764), (10, 2.2281), (30, 2.0423)])
def test_t_quantiles_match_the_tables(df, expected):
    assert stats.t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)


def test_two_proportion_z_test_by_hand():
    # 40/50 vs 30/50: pooled .7, se=sqrt(.7*.3*(2/50))=.09165, z=.2/.09165=2.1822, p=erfc(z/√2)=.0291
    z, p = stats.two_proportion_z(40, 50, 30, 50)
    assert z == pytest.approx(2.1822, abs=1e-4)
    assert p == pytest.approx(0.0291, abs=1e-4)
    assert p < 0.05


def test_two_proportion_small_difference_is_noise():
    z, p = stats.two_proportion_z(11, 20, 10, 20)
    assert p > 0.05


def test_welch_t_test_by_hand():
    # a: mean 2.5, s²=1.6667 -> v=.41667; b: mean 6, s²=10 -> v=2
    # t=-3.5/sqrt(2.41667)=-2.2514; df=2.41667²/(.41667²/3+2²/4)=5.5208
    t, df, p = stats.welch_t([1, 2, 3, 4], [2, 4, 6, 8, 10])
    assert t == pytest.approx(-2.2514, abs=1e-4)
    assert df == pytest.approx(5.5208, abs=1e-4)
    assert 0.05 < p < 0.1  # two-sided p about 0.069 (t table: t(.95, 5.5) = 1.96, t(.975, 5.5) = 2.50)


def test_t_p_value_matches_the_normal_for_large_df():
    assert stats.t_two_sided_p(1.96, 1e7) == pytest.approx(0.05, abs=1e-4)
    assert stats.t_two_sided_p(2.228138852, 10) == pytest.approx(0.05, abs=1e-6)


def test_normal_p_value():
    assert stats.normal_two_sided_p(0) == 1
    assert stats.normal_two_sided_p(1.959963984540054) == pytest.approx(0.05)
    assert math.isclose(stats.normal_two_sided_p(-3), stats.normal_two_sided_p(3))
