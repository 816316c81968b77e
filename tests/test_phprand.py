"""PhpRandom against values printed by PHP 8.2 itself (``php -r``); PHP is not needed to run these."""

from __future__ import annotations

import numpy as np
import pytest

from kcaptcha_solver.phprand import PhpRandom


def test_digits_of_the_first_gnuboard5_image() -> None:
    # php -r 'mt_srand(81000000); for($i=0;$i<6;$i++) echo mt_rand(0,9)," ";'
    rng = PhpRandom(81000000)
    assert [rng.randint(0, 9) for _ in range(6)] == [8, 8, 8, 5, 4, 0]


def test_mixed_calls_match_php() -> None:
    # mt_srand(12345); per line: mt_rand(0,9), mt_rand(750000,1200000), mt_rand(0,31415926),
    # mt_rand(), mt_rand(0,2147483647), mt_rand(-5,5)
    expected = [
        [0, 1176886, 7937824, 280691776, 789925284, 5],
        [0, 1108271, 19334042, 1142628625, 410361373, -3],
        [6, 1103977, 9356764, 1983712583, 1069045865, 1],
    ]
    rng = PhpRandom(12345)
    got = [
        [
            rng.randint(0, 9),
            rng.randint(750000, 1200000),
            rng.randint(0, 31415926),
            rng.rand(),
            rng.randint(0, 2147483647),
            rng.randint(-5, 5),
        ]
        for _ in range(3)
    ]
    assert got == expected


def test_seed_edges_and_full_range() -> None:
    # mt_srand(0); mt_rand()  |  mt_srand(4294967295); mt_rand(), mt_rand(1,100)
    assert PhpRandom(0).rand() == 1178568022
    rng = PhpRandom(4294967295)
    assert [rng.rand(), rng.randint(1, 100)] == [209663185, 79]
    # mt_srand(7); 5 x mt_rand(0,4294967295): the raw words, no reduction
    rng = PhpRandom(7)
    assert [rng.randint(0, 4294967295) for _ in range(5)] == [
        327741615, 976413892, 3349725721, 1369975286, 1882953283,
    ]  # fmt: skip


# mt_srand(s); 4 x (mt_rand(0,9), mt_rand(0,3000000000)). For 0..3000000000 PHP rejects every
# word above 3000000000 (about 30 %); seed 1 rejects words 2, 3 and 4 of its stream.
REJECTING = {
    1: [5, 491263, 3, 1298508491, 1, 630311759, 2, 396591248],
    2: [8, 794921487, 1, 2360782358, 9, 1869695442, 5, 1805465960],
    3: [6, 303761048, 7, 1249426360, 0, 2193987840, 5, 1877166739],
}


@pytest.mark.parametrize("seed", sorted(REJECTING))
def test_rejection_one_call_at_a_time(seed: int) -> None:
    rng = PhpRandom(seed)
    got = [rng.randint(0, 9) if k % 2 == 0 else rng.randint(0, 3000000000) for k in range(8)]
    assert got == REJECTING[seed]


@pytest.mark.parametrize("seed", sorted(REJECTING))
def test_rejection_falls_back_in_randint_pattern(seed: int) -> None:
    raw = np.random.RandomState(seed).randint(0, 1 << 32, size=8, dtype=np.uint32)
    assert (raw > 3000000000).any(), "the case must exercise the rejection path"
    rng = PhpRandom(seed)
    got = rng.randint_pattern(np.array([0, 0]), np.array([9, 3000000000]), 4)
    assert got.reshape(-1).tolist() == REJECTING[seed]
    # The stream goes on where PHP's would: same as drawing the calls one by one.
    ref = PhpRandom(seed)
    for _ in range(4):
        ref.randint(0, 9), ref.randint(0, 3000000000)
    assert rng.rand() == ref.rand()


def test_pattern_equals_single_calls_across_a_block_boundary() -> None:
    a, b = PhpRandom(99), PhpRandom(99)
    for _ in range(2000):  # leave the buffer nearly empty so the pattern must refill it
        a.randint(0, 9), b.randint(0, 9)
    got = a.randint_pattern(np.array([0, 10]), np.array([139, 45]), 700)
    want = [[b.randint(0, 139), b.randint(10, 45)] for _ in range(700)]
    assert got.tolist() == want
    assert a.rand() == b.rand()


def test_reseed_restarts_the_stream() -> None:
    rng = PhpRandom(5)
    first = [rng.randint(0, 99) for _ in range(10)]
    rng.reseed(5)
    assert [rng.randint(0, 99) for _ in range(10)] == first


@pytest.mark.parametrize("seed", [-1, 1 << 32])
def test_bad_seed(seed: int) -> None:
    with pytest.raises(ValueError, match="seed"):
        PhpRandom(seed)


def test_bad_range() -> None:
    with pytest.raises(ValueError):
        PhpRandom(1).randint(5, 4)
    with pytest.raises(ValueError):
        PhpRandom(1).randint_pattern(np.array([0]), np.array([-1]), 3)
