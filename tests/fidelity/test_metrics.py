"""Fidelity metrics on hand-made predictions whose values are computed by hand in comments."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from codistill.fidelity.metrics import (
    agreement,
    bootstrap_ci,
    calibration_gap,
    classifier_fidelity,
    consistency,
    correct_to_incorrect_rate,
    cqs_agreement,
    expected_calibration_error,
    flip_rate,
    flipped,
    generator_fidelity,
    high_confidence_preservation,
    jensen_shannon,
    mcnemar,
    mean_jsd,
    output_agreement,
    output_consistency,
    predicted_labels,
    recode_robustness,
    same_label,
    same_output,
    summarize,
    teacher_stable_student_flip_rate,
    undo_renames,
)

# Four inputs, binary labels. Hand-made predictions:
#   index        0  1  2  3
#   y            0  1  1  0
#   T(x)         0  1  1  1
#   T(x')        0  1  0  1
#   S(x)         0  1  0  1
#   S(x')        1  1  0  0
Y = np.array([0, 1, 1, 0])
T_O, T_V = np.array([0, 1, 1, 1]), np.array([0, 1, 0, 1])
S_O, S_V = np.array([0, 1, 0, 1]), np.array([1, 1, 0, 0])


def one_hot(labels: np.ndarray, classes: int = 2) -> np.ndarray:
    return np.eye(classes)[labels]


def test_agreement_counts_matching_labels():
    # T(x) = S(x) at 0, 1, 3.
    assert agreement(T_O, S_O) == pytest.approx(0.75)


def test_probabilities_and_labels_give_the_same_answer():
    assert agreement(one_hot(T_O), one_hot(S_O)) == agreement(T_O, S_O)
    np.testing.assert_array_equal(predicted_labels(one_hot(S_V)), S_V)


def test_consistency_per_model():
    # Teacher keeps its label at 0, 1, 3; the student at 1, 2.
    assert consistency(T_O, T_V) == pytest.approx(0.75)
    assert consistency(S_O, S_V) == pytest.approx(0.5)


def test_flips_counted_as_any_change():
    assert flip_rate(T_O, T_V) == pytest.approx(0.25)
    assert flip_rate(S_O, S_V) == pytest.approx(0.5)
    np.testing.assert_array_equal(flipped(S_O, S_V), [True, False, False, True])


def test_flips_counted_as_correct_to_incorrect():
    # Teacher right on 0, 1, 2 and wrong on the variant of 2: 1/3.
    assert correct_to_incorrect_rate(T_O, T_V, Y) == pytest.approx(1 / 3)
    # Student right on 0, 1 and wrong on the variant of 0: 1/2. (Index 3 flips 1 -> 0, wrong ->
    # right, which is a change but not a correct -> incorrect flip.)
    assert correct_to_incorrect_rate(S_O, S_V, Y) == pytest.approx(0.5)
    np.testing.assert_array_equal(
        flipped(S_O, S_V, Y, mode="correct_to_incorrect"), [True, False, False, False]
    )


def test_correct_to_incorrect_is_nan_when_nothing_was_correct():
    assert math.isnan(correct_to_incorrect_rate([1, 1], [0, 0], [0, 0]))


def test_teacher_stable_student_flips():
    # Teacher stable on 0, 1, 3; the student changes on 0 and 3 of those: 2/3.
    rate = teacher_stable_student_flip_rate(same_label(T_O, T_V), same_label(S_O, S_V))
    assert rate == pytest.approx(2 / 3)
    assert math.isnan(teacher_stable_student_flip_rate([False], [True]))


def test_jsd_is_zero_for_equal_distributions():
    p = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(jensen_shannon(p, p), [0.0, 0.0], atol=1e-12)


def test_jsd_is_ln2_for_disjoint_one_hots():
    assert mean_jsd(one_hot(np.array([0, 1])), one_hot(np.array([1, 0]))) == pytest.approx(
        math.log(2)
    )


def test_jsd_hand_value_and_symmetry():
    # p = (1/2, 1/2), q = (1, 0), m = (3/4, 1/4):
    # KL(p||m) = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3), KL(q||m) = ln(4/3) -> JSD = 3/4 ln(4/3).
    p, q = np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]])
    assert jensen_shannon(p, q)[0] == pytest.approx(0.75 * math.log(4 / 3))
    assert jensen_shannon(q, p)[0] == pytest.approx(jensen_shannon(p, q)[0])


def test_jsd_matches_scipy():
    distance = pytest.importorskip("scipy.spatial.distance")
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(5), size=8), rng.dirichlet(np.ones(5), size=8)
    expected = [distance.jensenshannon(a, b) ** 2 for a, b in zip(p, q, strict=True)]
    np.testing.assert_allclose(jensen_shannon(p, q), expected, rtol=1e-9)


def test_high_confidence_preservation():
    teacher = np.array([[0.95, 0.05], [0.92, 0.08], [0.1, 0.9], [0.6, 0.4]])
    student = np.array([[0.97, 0.03], [0.85, 0.15], [0.05, 0.95], [0.99, 0.01]])
    # Teacher confident (>= 0.9) on 0, 1, 2; the student is confident with the same label on 0
    # and 2 (on 1 it agrees but only at 0.85); 3 does not count (the teacher is unsure).
    assert high_confidence_preservation(teacher, student, 0.9) == pytest.approx(2 / 3)
    assert math.isnan(high_confidence_preservation(teacher, student, 0.999))


def test_ece_hand_example():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.5, 0.5]])
    labels = np.array([0, 1, 1, 0])
    # Two bins, (0, .5] and (.5, 1]. Upper bin: items 0, 1, 2 with confidence mean 0.7667 and
    # accuracy 2/3 -> 3/4 * 0.1 = 0.075. Lower bin: item 3 (0.5 belongs to (0, .5]), confidence
    # 0.5, correct (tie -> class 0) -> 1/4 * 0.5 = 0.125. ECE = 0.2.
    assert expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(0.2)
    # One bin: |accuracy 3/4 - mean confidence 0.7| = 0.05.
    assert expected_calibration_error(probs, labels, n_bins=1) == pytest.approx(0.05)


def test_ece_is_zero_when_confidence_matches_accuracy():
    probs = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probs, [0, 0, 0, 1], n_bins=10) == pytest.approx(0.0)


def test_calibration_gap_is_student_minus_teacher():
    teacher = np.array([[0.75, 0.25]] * 4)
    student = np.array([[1.0, 0.0]] * 4)
    gap = calibration_gap(teacher, student, [0, 0, 0, 1], n_bins=10)
    assert gap == pytest.approx({"teacher_ece": 0.0, "student_ece": 0.25, "gap": 0.25})


def test_undo_renames_handles_swaps_and_whole_words():
    assert undo_renames("b = a + ab", {"a": "b", "b": "a"}) == "a = b + ab"
    assert undo_renames("total + totals", {"count": "total"}) == "count + totals"


def test_generator_consistency_maps_renames_back():
    original = ["assertEquals(3, count);", "assertTrue(ok);"]
    variant = ["assertEquals(3, total);", "assertFalse(ok);"]
    renames = [{"count": "total"}, {}]
    np.testing.assert_array_equal(same_output(original, variant, renames), [True, False])
    assert output_consistency(original, variant, renames) == pytest.approx(0.5)
    assert output_consistency(original, variant) == pytest.approx(0.0)


def test_generator_output_keeping_an_old_name_is_a_change():
    # After count -> total the variant has no "count"; an output still using it differs.
    assert not same_output(["f(count)"], ["f(count)"], [{"count": "total"}])[0]


def test_output_agreement_with_a_normaliser():
    teacher, student = ["a  +  b", "x"], ["a + b", "y"]
    assert output_agreement(teacher, student) == 0.0
    assert output_agreement(teacher, student, normalise=lambda s: " ".join(s.split())) == 0.5


def test_cqs_agreement():
    # |diff| = 0.25, 0.125, 0 -> mean 0.125; within 0.125: items 1 and 2.
    result = cqs_agreement([0.75, 0.5, 1.0], [0.5, 0.625, 1.0], tolerance=0.125)
    assert result == pytest.approx({"mean_abs_diff": 0.125, "within_tolerance": 2 / 3})


def test_recode_greedy_hand_example():
    # Four tasks, s = 2 perturbed prompts, greedy (n = 1).
    #   task  nominal  perturbed  worst  best
    #   0     pass     pass pass  pass   pass
    #   1     pass     pass fail  fail   pass   -> RC[-]
    #   2     fail     fail pass  fail   pass   -> RC[+]
    #   3     fail     fail fail  fail   fail
    result = recode_robustness([1, 1, 0, 0], [[1, 1], [1, 0], [0, 1], [0, 0]])
    assert result == pytest.approx(
        {
            "pass_at_k": 0.5,
            "robust_pass": 0.25,
            "robust_drop": 0.5,
            "robust_change_minus": 0.25,
            "robust_change_plus": 0.25,
            "robust_relative": 0.5,
        }
    )


def test_recode_with_several_samples():
    # One task, n = 2 samples, s = 2. Sample 0 passes nominally and fails one perturbation;
    # sample 1 fails nominally and passes both perturbations.
    nominal = [[1, 0]]
    perturbed = [[[1, 1], [0, 1]]]  # [task][prompt][sample]
    r1 = recode_robustness(nominal, perturbed, k=1)
    # c = 1 -> pass@1 = 1/2; worst = (0, 1) -> rc = 1 -> RP@1 = 1/2; RC[-] = RC[+] = 1/2.
    assert r1 == pytest.approx(
        {
            "pass_at_k": 0.5,
            "robust_pass": 0.5,
            "robust_drop": 0.0,
            "robust_change_minus": 0.5,
            "robust_change_plus": 0.5,
            "robust_relative": 1.0,
        }
    )
    assert recode_robustness(nominal, perturbed, k=2)["robust_pass"] == pytest.approx(1.0)


def test_recode_drop_is_nan_without_nominal_passes():
    assert math.isnan(recode_robustness([0, 0], [[1], [0]])["robust_drop"])


def test_mcnemar_exact_hand_value():
    # b = 1 (only teacher flipped), c = 6 (only student flipped); 3 concordant.
    teacher = [1] + [0] * 6 + [1, 1, 0]
    student = [0] + [1] * 6 + [1, 1, 0]
    result = mcnemar(teacher, student)
    # p = 2 * (C(7,0) + C(7,1)) / 2^7 = 16/128.
    assert (result.b, result.c, result.method) == (1, 6, "exact")
    assert result.p_value == pytest.approx(0.125)
    assert result.statistic == 1.0


def test_mcnemar_exact_matches_scipy_binomtest():
    stats = pytest.importorskip("scipy.stats")
    result = mcnemar([1] * 4 + [0] * 15, [0] * 4 + [1] * 15)
    assert result.method == "exact"
    assert result.p_value == pytest.approx(stats.binomtest(4, 19, 0.5).pvalue)


def test_mcnemar_chi_square_hand_value():
    # b = 10, c = 25: X2 = (|10 - 25| - 1)^2 / 35 = 196/35 = 5.6.
    result = mcnemar([1] * 10 + [0] * 25, [0] * 10 + [1] * 25)
    assert result.method == "chi2"
    assert result.statistic == pytest.approx(5.6)
    # P(chi2_1 > 5.6) = erfc(sqrt(2.8)).
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(2.8)))
    stats = pytest.importorskip("scipy.stats")
    assert result.p_value == pytest.approx(stats.chi2.sf(5.6, df=1))


def test_mcnemar_without_discordant_pairs():
    result = mcnemar([1, 0], [1, 0])
    assert (result.statistic, result.p_value, result.b, result.c) == (0.0, 1.0, 0, 0)


def test_bootstrap_ci_contains_the_estimate_and_is_seeded():
    values = np.random.default_rng(1).random(50) < 0.7
    ci = bootstrap_ci(values, seed=3)
    assert ci.value == pytest.approx(values.mean())
    assert ci.low <= ci.value <= ci.high
    assert ci.low < ci.high
    assert bootstrap_ci(values, seed=3) == ci
    assert bootstrap_ci(values, seed=4) != ci


def test_bootstrap_ci_of_a_paired_statistic():
    t_same, s_same = same_label(T_O, T_V), same_label(S_O, S_V)
    ci = bootstrap_ci(
        statistic=lambda i: teacher_stable_student_flip_rate(t_same[i], s_same[i]), n_items=4
    )
    assert ci.value == pytest.approx(2 / 3)
    assert 0.0 <= ci.low <= ci.value <= ci.high <= 1.0


def test_bootstrap_with_groups_resamples_whole_inputs():
    # Two inputs with two variant rows each; a resample holds 0, 1 or 2 copies of input 0.
    values, groups = np.array([1.0, 1.0, 0.0, 0.0]), np.array([7, 7, 9, 9])
    seen = []
    ci = bootstrap_ci(
        statistic=lambda i: seen.append(i) or float(values[i].mean()),
        n_items=4,
        groups=groups,
        n_resamples=200,
    )
    assert all(len(i) == 4 and values[i].sum() in (0, 2, 4) for i in seen[1:])
    assert {ci.low, ci.high} <= {0.0, 0.5, 1.0}


def test_summarize_is_json_ready():
    out = summarize(
        {"agreement": same_label(T_O, S_O)},
        {"never_defined": lambda i: math.nan},
        n_items=4,
        n_resamples=50,
    )
    assert out["agreement"]["value"] == pytest.approx(0.75)
    assert out["never_defined"] == {"value": None, "ci_low": None, "ci_high": None}
    json.dumps(out, allow_nan=False)


def test_classifier_fidelity_reports_every_metric():
    to, tv, so, sv = (one_hot(a) for a in (T_O, T_V, S_O, S_V))
    report = classifier_fidelity(to, tv, so, sv, Y, n_resamples=50)
    json.dumps(report, allow_nan=False)
    metrics = report["metrics"]
    assert metrics["agreement"]["value"] == pytest.approx(0.75)
    assert metrics["teacher_consistency"]["value"] == pytest.approx(0.75)
    assert metrics["student_consistency"]["value"] == pytest.approx(0.5)
    assert metrics["teacher_correct_to_incorrect"]["value"] == pytest.approx(1 / 3)
    assert metrics["student_correct_to_incorrect"]["value"] == pytest.approx(0.5)
    assert metrics["teacher_stable_student_flip_rate"]["value"] == pytest.approx(2 / 3)
    assert metrics["jsd"]["value"] == pytest.approx(0.25 * math.log(2))
    # One-hot predictions are fully confident: ECE = error rate (T 1/4, S 2/4).
    assert metrics["ece_gap"]["value"] == pytest.approx(0.25)
    # Teacher flips only at 2, the student only at 0 and 3.
    assert (report["mcnemar"]["b"], report["mcnemar"]["c"]) == (1, 2)


def test_generator_fidelity_reports_every_metric():
    report = generator_fidelity(
        ["f(count)", "g(x)"],
        ["f(total)", "g(x)"],
        ["f(count)", "g(y)"],
        ["f(count)", "g(y)"],
        renames=[{"count": "total"}, {}],
        teacher_cqs=[1.0, 0.5],
        student_cqs=[1.0, 0.25],
        n_resamples=50,
    )
    json.dumps(report, allow_nan=False)
    metrics = report["metrics"]
    assert metrics["agreement"]["value"] == pytest.approx(0.5)
    assert metrics["teacher_consistency"]["value"] == pytest.approx(1.0)
    # Row 0: on the variant (count -> total) the student still writes "count", a name the
    # variant no longer has: a change. Row 1 is unchanged.
    assert metrics["student_consistency"]["value"] == pytest.approx(0.5)
    assert metrics["teacher_stable_student_change_rate"]["value"] == pytest.approx(0.5)
    assert metrics["cqs_mean_abs_diff"]["value"] == pytest.approx(0.125)


def test_generator_correct_to_incorrect_counts_only_rows_right_on_the_original():
    # Rows: (teacher x, teacher x', student x, student x', reference x, reference x')
    rows = [
        ("f(a)", "f(b)", "f(a)", "g(b)", "f(a)", "f(b)"),  # both right; student breaks
        ("f(a)", "g(b)", "f(a)", "f(b)", "f(a)", "f(b)"),  # both right; teacher breaks
        ("h(a)", "f(b)", "f(a)", "f(b)", "f(a)", "f(b)"),  # teacher wrong on x: not counted
        ("f(a)", "f(b)", "x", "y", "f(a)", "f(b)"),  # student wrong on x: not counted
    ]
    to, tv, so, sv, ro, rv = (list(c) for c in zip(*rows, strict=True))
    report = generator_fidelity(
        to, tv, so, sv, reference_original=ro, reference_variant=rv, n_resamples=50
    )
    m = report["metrics"]
    assert m["teacher_correct_to_incorrect"]["value"] == pytest.approx(1 / 3)
    assert m["student_correct_to_incorrect"]["value"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="both reference_original and reference_variant"):
        generator_fidelity(to, tv, so, sv, reference_original=ro)
