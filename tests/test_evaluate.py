"""`edge-agent evaluate`: a model and the diagnosis measured on labelled recordings.

Real recordings (the ITSC motor, tests/data/itsc/labels.csv), real model bundles trained
by `edge-agent train`, simulated faults with a known onset; the figures are checked against
the window records that `replay` writes for the same files.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.errors import InputDataError, InputMissingError
from edge_agent.training.evaluate import LABELS, read_labels, roc_auc, threshold_for_fpr
from tests.test_cli import ITSC, ITSC_CONFIG, alerts, records, run, windows

LABELS_CSV = ITSC / "labels.csv"


def evaluate(tmp_path: Path, *args) -> tuple[str, dict]:
    out = tmp_path / "report.json"
    res = run("evaluate", *args, "--out", out)
    assert res.exit_code == 0, res.output
    return res.output, json.loads(out.read_text())


# --- real recordings ----------------------------------------------------------------------


def test_itsc_report_matches_what_replay_gives_each_recording(itsc_model, tmp_path):
    text, report = evaluate(tmp_path, LABELS_CSV, "--model", itsc_model, "--config", ITSC_CONFIG)
    rows = {Path(r["file"]).name: r for r in report["recordings"]}
    assert len(rows) == 11
    healthy_scores, faulty_scores = [], []
    for name, row in rows.items():
        out = tmp_path / f"{name}.jsonl"
        res = run("replay", ITSC / name, "--model", itsc_model, "--config", ITSC_CONFIG,
                  "--out", out)  # fmt: skip
        assert res.exit_code == 0, res.output
        recs = records(out)
        scores = [w["score"] for w in windows(recs)]
        assert row["windows"] == len(scores)
        assert row["anomalous"] == sum(w["anomalous"] for w in windows(recs))
        assert row["score_p50"] == pytest.approx(float(np.median(scores)))
        raised = alerts(recs)
        if row["label"] == "healthy":
            healthy_scores += scores
            assert row["false_alarms"] == [] and not raised
        else:
            faulty_scores += scores
            assert [a["fault"] for a in row["alerts"]] == [a["fault"] for a in raised]
        # The model was trained on the three healthy recordings, and the report knows it.
        assert row["in_training"] is name.startswith("SC_HLT")

    w = report["windows"]
    assert (w["healthy"], w["faulty"], w["healthy_from_training"]) == (27, 72, 27)
    threshold = report["model"]["threshold"]
    assert w["false_positives"] == sum(s > threshold for s in healthy_scores) == 0
    assert w["detected"] == sum(s > threshold for s in faulty_scores)
    # The shorts come and go within a recording, so not every window of one is abnormal,
    # but nearly every one scores above every healthy window.
    assert 0.4 < w["detection_rate"] < 1.0
    assert w["roc_auc"] > 0.95
    assert w["threshold_at_max_fpr"] == pytest.approx(max(healthy_scores))
    assert w["detection_rate_at_max_fpr"] > w["detection_rate"]

    a = report["alerts"]
    assert (a["healthy_with_false_alarm"], a["detected"], a["faulty_recordings"]) == (0, 8, 8)
    # Every short is named, more severe as more turns are shorted (10 % ... 40 %). No
    # voltages: by the change from the healthy runs' negative sequence.
    assert report["model"]["negative_sequence"] == pytest.approx(0.13, abs=0.01)  # A
    assert a["by_label"]["stator_short"]["named"] == 8
    assert a["by_label"]["stator_short"]["recordings_with_alert_of"] == {
        "anomaly": 8, "stator_short": 8}  # fmt: skip
    severity = {
        name: next(x["severity"] for x in row["alerts"] if x["fault"] == "stator_short")
        for name, row in rows.items()
        if row["label"] == "stator_short"
    }
    assert [severity[f"SC_A0_B0_C{c}_00{r}.csv"] for c in (1, 2, 3, 4) for r in (1, 2)] == [
        "watch", "watch", "warning", "warning", "alarm", "alarm", "alarm", "alarm"]  # fmt: skip

    assert "SC_HLT_001.csv *" in text and "ROC AUC" in text
    assert "27 of the 27 healthy windows come from recordings the model was trained on" in text
    assert "detections: 8 of 8 faulty recordings raised an alert" in text


def test_two_recordings_set_the_threshold_by_scoring_each_with_a_model_of_the_other(tmp_path):
    # Each healthy run scored by a model fitted on the other: the spread between runs
    # counts, and the third run, unseen, stays under the threshold. In-sample scores alone
    # would have put it at 0.12, under the third run's scores.
    model = tmp_path / "two"
    res = run("train", ITSC / "SC_HLT_001.csv", ITSC / "SC_HLT_002.csv", "--out", model,
              "--config", ITSC_CONFIG)  # fmt: skip
    assert res.exit_code == 0, res.output
    # 5 s runs are shorter than the 8 s long window: train says what that leaves out.
    assert "no healthy line levels, so no eccentricity or bearing alerts" in res.output
    assert "warning: the threshold has seen two runs of the motor" in res.output
    # The recordings' current scale is not calibrated: i1 reads 4.5 A on a 3 A nameplate.
    assert "x the nameplate's rated_current (3 A): it is overloaded, or" in res.output
    card = json.loads((model / "model.json").read_text())
    assert "leave-one-recording-out" in card["threshold_rule"]
    assert card["held_out"]["windows"] == 18
    text, report = evaluate(tmp_path, LABELS_CSV, "--model", model, "--config", ITSC_CONFIG)
    unseen = next(r for r in report["recordings"] if r["file"].endswith("SC_HLT_003.csv"))
    assert not unseen["in_training"] and unseen["anomalous"] == 0 and not unseen["false_alarms"]
    assert report["alerts"]["healthy_with_false_alarm"] == 0
    assert report["alerts"]["detected"] == 8
    assert "false alarms: 0 of 3 healthy recordings raised an alert" in text


def test_one_recording_sets_the_threshold_from_its_stretches_and_train_warns(tmp_path):
    model = tmp_path / "one"
    res = run("train", ITSC / "SC_HLT_001.csv", "--out", model, "--config", ITSC_CONFIG)
    assert res.exit_code == 0, res.output
    assert "warning: the threshold has seen 3 stretches of one recording" in res.output
    card = json.loads((model / "model.json").read_text())
    assert "stretch" in card["threshold_rule"] and card["held_out"]["windows"] == 9
    # In-sample scores alone gave a threshold of 1e-8: every other window an anomaly.
    assert card["threshold"] > 0.1
    # But one 5 s run cannot know how the next run differs, as the warning says: the
    # report shows the other two healthy runs' false alarms.
    text, report = evaluate(tmp_path, LABELS_CSV, "--model", model, "--config", ITSC_CONFIG)
    assert report["alerts"]["healthy_with_false_alarm"] == 2
    assert "false alarms: 2 of 3 healthy recordings raised an alert" in text


# --- a fault with a known onset -----------------------------------------------------------


@pytest.fixture(scope="module")
def bar_from_8s(tmp_path_factory):
    """24 s at 15 kS/s, healthy, and with a broken bar (40 dB) from 8 s on."""
    d = tmp_path_factory.mktemp("onset")
    for name, extra in (("healthy", []), ("bar", ["--fault", "broken-bar", "--severity", "40",
                                                  "--onset", "8"])):  # fmt: skip
        res = run("simulate", "-o", d / f"{name}.npy", "--duration", "24", "--seed", "3", *extra)
        assert res.exit_code == 0, res.output
    return d


def test_windows_before_the_onset_count_as_healthy_and_the_bar_is_named(bar_from_8s, tmp_path):
    labels = bar_from_8s / "labels.csv"
    labels.write_text("file,label,onset_s\nhealthy.npy,healthy,\nbar.npy,broken-bar,8\n")
    text, report = evaluate(tmp_path, labels, "--fs", "15000")
    bar = report["recordings"][1]
    assert bar["label"] == "broken_rotor_bar" and bar["onset_s"] == 8.0
    # 1 s windows every 0.5 s: 47 a recording. Those ending by 8 s are healthy (15), the
    # one from 7.5 to 8.5 s crosses the onset, the rest are faulty (31).
    w = report["windows"]
    assert (w["healthy"], w["crossing_fault_edge"], w["faulty"]) == (47 + 15, 1, 31)
    assert bar["named_fault"] is True and bar["false_alarms"] == []
    first = min(a["t"] for a in bar["alerts"] if a["fault"] == "broken_rotor_bar")
    assert bar["first_alert_after_s"] == pytest.approx(first - 8.0) and first > 8.0
    assert report["alerts"]["by_label"]["broken_rotor_bar"]["named"] == 1
    assert "bar.npy" in text and "broken_rotor_bar from 8 s" in text

    # With an end, the windows after it are healthy again.
    labels.write_text("file,label,onset_s,end_s\nbar.npy,broken_rotor_bar,8,16\n")
    _, report = evaluate(tmp_path, labels, "--fs", "15000")
    w = report["windows"]
    assert (w["healthy"], w["crossing_fault_edge"], w["faulty"]) == (15 + 15, 2, 15)


# --- the metrics --------------------------------------------------------------------------

scores = st.lists(st.sampled_from([0.1, 0.2, 0.5, 1.0, 3.0]) | st.floats(0, 10), max_size=30)


@given(scores, scores)
def test_roc_auc_is_the_share_of_faulty_healthy_pairs_ranked_right(healthy, faulty):
    auc = roc_auc(healthy, faulty)
    if not healthy or not faulty:
        assert auc is None
        return
    pairs = [(f > h) + 0.5 * (f == h) for h, f in itertools.product(healthy, faulty)]
    assert auc == pytest.approx(sum(pairs) / len(pairs))


@given(scores.filter(bool), st.floats(0, 0.99))
def test_threshold_for_fpr_is_the_lowest_that_keeps_false_positives_down(healthy, max_fpr):
    t = threshold_for_fpr(healthy, max_fpr)
    allowed = math.floor(max_fpr * len(healthy) + 1e-9)
    assert sum(s > t for s in healthy) <= allowed
    lower = [s for s in healthy if s < t]
    if lower:  # the next healthy score below it would flag too many
        assert sum(s > max(lower) for s in healthy) > allowed


# --- the labels file ----------------------------------------------------------------------

rows = st.lists(
    st.tuples(
        st.sampled_from(["SC_HLT_001.csv", "SC_A0_B0_C4_002.csv"]),
        st.sampled_from([*LABELS, "Stator-Short", "broken-bar", "bearing-outer"]),
        st.one_of(st.none(), st.floats(0, 100).map(lambda x: round(x, 3))),
        st.one_of(st.none(), st.floats(0.5, 50).map(lambda x: round(x, 3))),
        st.text('ab ,"', max_size=5),
    ),
    min_size=1,
    max_size=8,
)


@settings(deadline=None)
@given(rows, st.booleans())
def test_labels_file_round_trips(rows, bom):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["Label", "note", "file", "onset_s", "end_s"])  # any order, extra columns
    want = []
    for file, label, onset, length, note in rows:
        if label == "healthy":
            onset = length = None
        end = None if length is None else (onset or 0.0) + length
        w.writerow([label, note, ITSC / file, "" if onset is None else onset,
                    "" if end is None else end])  # fmt: skip
        w.writerow([])  # blank lines are skipped
        norm = {"stator-short": "stator_short", "broken-bar": "broken_rotor_bar",
                "bearing-outer": "bearing"}.get(label.lower(), label)  # fmt: skip
        want.append((ITSC / file, norm, onset, end))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "labels.csv"
        path.write_text(("\ufeff" if bom else "") + buf.getvalue(), encoding="utf-8")
        got = [(r.path, r.label, r.onset_s, r.end_s) for r in read_labels(path)]
    assert got == [(p.resolve(), label, on, end) for p, label, on, end in want]


@pytest.mark.parametrize(
    ("content", "exit_code", "needle"),
    [
        (None, 66, "labels.csv: no such file"),
        ("name,label\nx.csv,healthy\n", 65, "line 1: expected a header with columns file, label"),
        ("file,label\n", 65, "no recordings listed"),
        ("file,label\nnope.csv,healthy\n", 66, "line 2: nope.csv: no such file"),
        ("file,label\n{hlt},broken\n", 65,
         "line 2: label 'broken' is not one of healthy, faulty, broken_rotor_bar"),
        ("file,label,onset_s\n{hlt},faulty,soon\n", 65, "onset_s 'soon' is not a time"),
        ("file,label,onset_s\n{hlt},faulty,-1\n", 65, "onset_s '-1' is not a time"),
        ("file,label,onset_s\n{hlt},healthy,2\n", 65, "a healthy recording has no fault onset_s"),
        ("file,label,onset_s,end_s\n{hlt},faulty,2,1\n", 65, "end_s 1 is not after onset_s 2"),
        ("file,label\n{hlt},healthy\n{bad},faulty\n", 65, "expected t_s (optional), ia, ib, ic"),
    ],
)  # fmt: skip
def test_bad_labels_are_refused_before_any_analysis(tmp_path, content, exit_code, needle):
    labels = tmp_path / "labels.csv"
    (tmp_path / "bad.csv").write_text("time,x,y,z\n0,1,2,3\n")
    if content is not None:
        labels.write_text(content.format(hlt=ITSC / "SC_HLT_001.csv", bad="bad.csv"))
    res = run("evaluate", labels, "--config", ITSC_CONFIG)
    assert res.exit_code == exit_code, res.output
    assert needle in res.output
    assert "model " not in res.output  # no report


def test_read_labels_errors_name_the_file_and_line(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\n# a comment row\n,healthy\n")
    with pytest.raises(InputDataError, match=r"labels\.csv: line 3: the file column is empty"):
        read_labels(labels)
    with pytest.raises(InputMissingError):
        read_labels(tmp_path / "none.csv")


def test_a_missing_model_exits_66(tmp_path):
    res = run("evaluate", LABELS_CSV, "--model", tmp_path / "nope")
    assert res.exit_code == 66
    assert "model bundle" in res.output and "folder not found" in res.output
