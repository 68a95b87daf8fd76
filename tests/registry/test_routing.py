"""Picking a target of an alias version: by weight, and stably per sticky key."""

from __future__ import annotations

from collections import Counter

from app.inference.classify import verdict
from app.registry.routing import AliasRoute, Choice, Endpoint


def route(*weights: float, version: int = 1) -> AliasRoute:
    targets = tuple(Choice(f"m{i}", weight, Endpoint(f"m{i}", "local", "base")) for i, weight in enumerate(weights))
    return AliasRoute("bot", version, targets, (), None, None)


def test_random_picks_follow_the_weights() -> None:
    picks = Counter(route(1, 3).pick(None).model for _ in range(8000))
    # Binomial(8000, 0.75): sd 0.0048; +-0.03 is over 6 sd.
    assert abs(picks["m1"] / 8000 - 0.75) < 0.03


def test_sticky_keys_are_stable_and_spread_by_weight() -> None:
    split = route(1, 1, 2)
    assert all(split.pick(f"user-{i}") == split.pick(f"user-{i}") for i in range(200))
    picks = Counter(split.pick(f"user-{i}").model for i in range(8000))
    assert abs(picks["m2"] / 8000 - 0.5) < 0.03
    assert abs(picks["m0"] / 8000 - 0.25) < 0.03


def test_a_new_version_reshuffles_users() -> None:
    """Stickiness is per version: a promoted split may move a user, never within one version."""
    before, after = route(1, 1, version=1), route(1, 1, version=2)
    moved = sum(before.pick(f"u{i}") != after.pick(f"u{i}") for i in range(2000))
    assert 800 < moved < 1200


def test_label_probabilities_from_top_tokens() -> None:
    top = {" yes": -0.3, " no": -1.8, " maybe": -3.0, "Yes": -4.0}
    found = verdict(top, ["yes", "no"], prompt_tokens=7)
    assert found.label == "yes"
    assert set(found.probabilities) == {"yes", "no"}
    assert abs(sum(found.probabilities.values()) - 1) < 1e-9
    assert found.probabilities["yes"] > 0.8
    assert 0 < found.coverage < 1 and found.prompt_tokens == 7
    # Tokens that are only a label's beginning count for it (multi-token labels).
    assert verdict({" pos": -0.1, " neg": -2.5}, ["positive", "negative"], 1).label == "positive"
    nothing = verdict({" cat": -0.1}, ["yes", "no"], 1)
    assert nothing.label is None and nothing.coverage == 0
