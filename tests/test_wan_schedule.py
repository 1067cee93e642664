"""The Wan few-step schedule reproduces the published warped timesteps."""

import pytest

from pipelines.wan.schedule import renoise, shift_sigma, warped_timesteps


def test_published_list_warped_by_shift_5_matches_reference_numbers() -> None:
    # Reference worked out by hand from sigma' = 5 s / (1 + 4 s), s = step / 1000:
    # 1000 -> 1000; 750 -> 3.75/4 = 0.9375; 500 -> 2.5/3; 250 -> 1.25/2 = 0.625.
    expected = [1000.0, 937.5, 2500.0 / 3.0, 625.0]
    assert warped_timesteps() == pytest.approx(expected, abs=1e-9)


def test_shift_one_is_identity_and_warp_is_monotonic() -> None:
    assert warped_timesteps((1000, 500, 1), shift=1.0) == pytest.approx([1000.0, 500.0, 1.0])
    warped = warped_timesteps((1000, 800, 600, 400, 200, 1))
    assert warped == sorted(warped, reverse=True)
    assert shift_sigma(0.0, shift=5.0) == 0.0


def test_renoise_interpolates_between_clean_and_noise() -> None:
    assert renoise(2.0, 10.0, timestep=0.0) == 2.0
    assert renoise(2.0, 10.0, timestep=1000.0) == 10.0
    assert renoise(2.0, 10.0, timestep=625.0) == pytest.approx(2.0 * 0.375 + 10.0 * 0.625)


@pytest.mark.parametrize("bad", [(), (0,), (1001,)])
def test_bad_step_lists_are_refused_clearly(bad: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        warped_timesteps(bad)
