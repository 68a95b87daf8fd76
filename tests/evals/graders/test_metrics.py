"""text_similarity metrics against values worked out by hand from each metric's definition."""

from __future__ import annotations

import math

import pytest

from app.evals.graders._similarity import similarity
from app.evals.graders._wordnet import installed


def test_fuzzy_match_is_the_normalised_indel_similarity() -> None:
    # kitten/sitting: longest common subsequence "ittn" (4); indel distance = 6 + 7 - 2 * 4 = 5; 1 - 5/13.
    assert similarity("fuzzy_match", "kitten", "sitting") == pytest.approx(8 / 13)
    assert similarity("fuzzy_match", "same text", "same text") == 1.0
    assert similarity("fuzzy_match", "abc", "xyz") == 0.0
    assert similarity("fuzzy_match", "Case", "case") == pytest.approx(1 - 2 / 8)  # C/c: one delete + one insert


def test_bleu_of_an_identical_sentence_is_one() -> None:
    assert similarity("bleu", "the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    assert similarity("bleu", "hello world", "hello world") == pytest.approx(1.0)  # fewer than 4 words: reweighed


def test_bleu_is_the_geometric_mean_of_clipped_ngram_precisions() -> None:
    # "the cat sat on a mat" against "the cat sat on the mat", same length (brevity penalty 1):
    # 1-grams 5/6, 2-grams 3/5 (the cat, cat sat, sat on), 3-grams 2/4, 4-grams 1/3 -> (1/12) ** (1/4).
    score = similarity("bleu", "the cat sat on a mat", "the cat sat on the mat")
    assert score == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)


def test_bleu_of_a_short_answer_uses_its_orders_and_the_brevity_penalty() -> None:
    # 3 words, all 1- to 3-grams match (weights 1/3 each); brevity penalty exp(1 - 4/3).
    assert similarity("bleu", "a b c", "a b c d") == pytest.approx(math.exp(1 - 4 / 3))


def test_gleu_is_min_of_ngram_precision_and_recall() -> None:
    # 1- to 4-grams: 18 in each sentence, 5 + 3 + 2 + 1 = 11 shared.
    assert similarity("gleu", "the cat sat on a mat", "the cat sat on the mat") == pytest.approx(11 / 18)
    assert similarity("gleu", "the cat", "the cat sat on the mat") == pytest.approx(3 / 18)  # recall: 2 + 1 of 18


def test_meteor_penalises_fragmentation_and_matches_wordnet_synonyms() -> None:
    assert installed(), "WordNet is installed by `make install` (and `make test`): METEOR needs it"
    # Identical: 6 matches in 1 chunk; F-mean 1, penalty 0.5 * (1/6) ** 3.
    assert similarity("meteor", "the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1 - 0.5 / 216)
    # "hound" and "dog" share a WordNet synset (cad.n.01): 3 matches in 1 chunk, penalty 0.5 * (1/3) ** 3.
    assert similarity("meteor", "the hound barked", "the dog barked") == pytest.approx(1 - 0.5 / 27)
    # No synonym of "cat" in "the dog barked": 2 matches (P = R = 2/3, F-mean 2/3) in 2 chunks, penalty 0.5.
    assert similarity("meteor", "the cat barked", "the dog barked") == pytest.approx(2 / 3 * 0.5)


def test_rouge_is_the_f_measure_of_ngram_and_subsequence_overlap() -> None:
    hypothesis, reference = "the gunman kill police", "police killed the gunman"
    # 1-grams shared: the, gunman, police -> P = R = 3/4.
    assert similarity("rouge_1", hypothesis, reference) == pytest.approx(3 / 4)
    # 2-grams shared: "the gunman" -> P = R = 1/3.
    assert similarity("rouge_2", hypothesis, reference) == pytest.approx(1 / 3)
    # Longest common subsequence "the gunman" (2) -> P = R = 2/4.
    assert similarity("rouge_l", hypothesis, reference) == pytest.approx(2 / 4)


def test_rouge_3_to_5_count_longer_ngrams() -> None:
    hypothesis, reference = "a b c d e f", "a b c d e g"
    assert similarity("rouge_3", hypothesis, reference) == pytest.approx(3 / 4)  # abc bcd cde of 4 each
    assert similarity("rouge_4", hypothesis, reference) == pytest.approx(2 / 3)  # abcd bcde of 3 each
    assert similarity("rouge_5", hypothesis, reference) == pytest.approx(1 / 2)  # abcde of 2 each


def test_rouge_reads_every_script_case_insensitively() -> None:
    assert similarity("rouge_1", "Café au LAIT", "café au lait") == pytest.approx(1.0)
    assert similarity("rouge_1", "καλή μέρα φίλε", "καλή μέρα") == pytest.approx(2 * (2 / 3 * 1) / (2 / 3 + 1))


@pytest.mark.parametrize("metric", ["bleu", "gleu", "meteor", "rouge_1", "rouge_l"])
def test_an_empty_answer_scores_zero(metric: str) -> None:
    assert similarity(metric, "", "the reference") == 0.0
    assert similarity(metric, "an answer", "") == 0.0
