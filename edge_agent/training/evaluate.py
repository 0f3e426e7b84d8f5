"""How well a model and the diagnosis do on labelled recordings (``edge-agent evaluate``).

The labels come in a CSV file, one recording per row::

    file,label,onset_s,end_s
    healthy-2026-03.csv,healthy,,
    after-repair.csv,healthy,,
    shop-test-bar-cracked.csv,broken_rotor_bar,,
    run-to-failure.npy,bearing,3600,
    short-test.csv,stator_short,20,50

``file`` is relative to the labels file; ``label`` is ``healthy``, ``faulty`` (a fault of
unknown kind) or one of the alert fault names. ``onset_s`` and ``end_s`` (optional) say
when the fault began and ended, in seconds from the start of the recording: windows
inside that span count as faulty, windows outside it as healthy, and the few that cross
an edge as neither. Alerts raised before the onset are false alarms; from the onset on,
detections.

Each recording goes through the same :class:`~edge_agent.pipeline.Pipeline` as ``replay``,
afresh. Two views come out:

- **Windows**: the autoencoder's score of every window against the model's threshold: the
  false-positive rate on healthy windows, the detection rate on faulty ones, the ROC AUC
  (how well the score ranks faulty above healthy at any threshold), and the threshold
  that would keep false positives at or below a target on these healthy windows.
- **Alerts**, as the plant would see them (after the debouncing of ``[alerts]``): false
  alarms on healthy recordings, faulty recordings with an alert and how long after the
  onset it came, and whether an alert named the labelled fault.
"""

from __future__ import annotations

import csv
import math
import textwrap
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from edge_agent.config import Config
from edge_agent.diagnosis import BASELINE_LINES
from edge_agent.errors import InputDataError, InputMissingError
from edge_agent.pipeline import Pipeline
from edge_agent.publish.schema import FAULTS
from edge_agent.recording import open_recording
from edge_agent.scoring import Scorer
from edge_agent.store import model_id
from edge_agent.summary import flagged
from edge_agent.training.bundle import sha256_file

HEALTHY = "healthy"
FAULTY = "faulty"
# What a label may say: healthy, an unnamed fault, or a fault an alert can name.
NAMED_FAULTS: tuple[str, ...] = tuple(f for f in FAULTS if f != "anomaly")
LABELS: tuple[str, ...] = (HEALTHY, FAULTY, *NAMED_FAULTS)
# The simulator's fault names (`edge-agent simulate --fault`) mean these labels.
LABEL_ALIASES = {"broken_bar": "broken_rotor_bar", "bearing_outer": "bearing"}
COLUMNS = ("file", "label", "onset_s", "end_s")


@dataclass(frozen=True)
class LabelledRecording:
    path: Path
    label: str  # one of LABELS
    onset_s: float | None  # when the fault began; None: from the start (or healthy)
    end_s: float | None  # when it ended; None: it lasted to the end (or healthy)
    line: int  # in the labels file, for messages

    @property
    def faulty(self) -> bool:
        return self.label != HEALTHY

    @property
    def start_s(self) -> float:
        """When the fault began: its onset, else the start of the recording."""
        return self.onset_s or 0.0

    def truth(self, t_start: float, t_end: float) -> bool | None:
        """Whether the window [t_start, t_end] s is faulty; None if it crosses an edge of
        the fault's span."""
        if not self.faulty:
            return False
        end = math.inf if self.end_s is None else self.end_s
        if self.start_s <= t_start and t_end <= end:
            return True
        return False if t_end <= self.start_s or t_start >= end else None


def read_labels(path: str | Path) -> list[LabelledRecording]:
    """The recordings listed in the labels CSV ``path``, checked before any is analysed.

    Raises InputMissingError (66) for a missing labels file or recording, InputDataError
    (65) naming the line for a missing column, an unknown label or a bad onset. Extra
    columns (notes, severities) are allowed and ignored; a row whose ``file`` starts with
    ``#`` is a comment.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a spreadsheet's byte-order mark
    except FileNotFoundError:
        raise InputMissingError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise InputDataError(f"{path}: not UTF-8 text; expected a CSV file of labels") from None
    except OSError as exc:
        raise InputMissingError(f"{path}: cannot read: {exc.strerror}") from None
    reader = csv.reader(text.splitlines())
    header = [h.strip().lower() for h in next(reader, [])]
    if "file" not in header or "label" not in header:
        raise InputDataError(
            f"{path}: line 1: expected a header with columns file, label (and optionally "
            f"onset_s), found {', '.join(header) or 'nothing'}"
        )
    col = {name: header.index(name) for name in COLUMNS if name in header}
    out = []
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row) or row[col["file"]].strip().startswith("#"):
            continue
        cells = {name: row[i].strip() if i < len(row) else "" for name, i in col.items()}
        out.append(_labelled(path, line, cells))
    if not out:
        raise InputDataError(f"{path}: no recordings listed; expected rows of file,label")
    return out


def _labelled(manifest: Path, line: int, cells: dict[str, str]) -> LabelledRecording:
    where = f"{manifest}: line {line}"
    if not cells["file"]:
        raise InputDataError(f"{where}: the file column is empty")
    label = cells["label"].lower().replace("-", "_").replace(" ", "_")
    label = LABEL_ALIASES.get(label, label)
    if label not in LABELS:
        raise InputDataError(f"{where}: label {cells['label']!r} is not one of {', '.join(LABELS)}")
    onset, end = (_time(where, name, cells.get(name, "")) for name in ("onset_s", "end_s"))
    if label == HEALTHY and (onset is not None or end is not None):
        raise InputDataError(f"{where}: a healthy recording has no fault onset_s or end_s")
    if end is not None and end <= (onset or 0.0):
        raise InputDataError(f"{where}: end_s {end:g} is not after onset_s {onset or 0.0:g}")
    rec = (manifest.parent / cells["file"]).resolve()
    if not rec.is_file():
        raise InputMissingError(f"{where}: {cells['file']}: no such file (looked in {rec})")
    return LabelledRecording(rec, label, onset, end, line)


def _time(where: str, name: str, cell: str) -> float | None:
    if not cell:
        return None
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise InputDataError(
            f"{where}: {name} {cell!r} is not a time; expected seconds from the start of "
            "the recording, or nothing"
        )
    return value


@dataclass
class RecordingResult:
    """What the pipeline made of one labelled recording."""

    rec: LabelledRecording
    fs: float
    # Per window: start and end (s), score (None: not scored), anomalous, flagged.
    windows: list[tuple[float, float, float | None, bool, bool]] = field(default_factory=list)
    # Windows flagged "outside_baseline": scored, but raising no anomaly alert.
    outside_baseline: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)  # raised ones only
    in_training: bool = False  # the model was trained on this very file


def run_recording(
    rec: LabelledRecording,
    config: Config,
    scorer: Scorer,
    *,
    fs: float | None = None,
    columns: Sequence[str] | None = None,
) -> RecordingResult:
    """Stream one recording through a fresh pipeline, as ``replay`` does, and keep the
    windows' scores and the alerts raised."""
    with open_recording(rec.path, fs=fs, columns=columns) as r:
        pipe = Pipeline(config, r.fs, r.roles, scorer)
        out = RecordingResult(rec, r.fs)
        for record in pipe.feed(r.chunks()):
            if record["type"] == "window":
                out.windows.append(
                    (record["t_start"], record["t_end"], record["score"],
                     record["anomalous"], flagged(record["flags"]))
                )  # fmt: skip
                out.outside_baseline += "outside_baseline" in record["flags"]
            elif record["type"] == "alert" and record["state"] == "raised":
                out.alerts.append(record)
    return out


def roc_auc(healthy: Sequence[float], faulty: Sequence[float]) -> float | None:
    """Probability that a faulty window scores above a healthy one (ties count half).

    The Mann-Whitney U statistic over both counts; None when either side is empty.
    """
    h = np.asarray(healthy, dtype=np.float64)
    f = np.asarray(faulty, dtype=np.float64)
    if h.size == 0 or f.size == 0:
        return None
    ranks = rankdata(np.concatenate([h, f]))
    u = ranks[h.size :].sum() - f.size * (f.size + 1) / 2.0
    return float(u / (h.size * f.size))


def threshold_for_fpr(healthy: Sequence[float], max_fpr: float) -> float | None:
    """The lowest threshold that flags at most ``max_fpr`` of the ``healthy`` scores.

    A window is flagged when its score is above the threshold, so this is the healthy
    score with ``floor(max_fpr * n)`` scores above it. None without healthy scores.
    """
    h = np.sort(np.asarray(healthy, dtype=np.float64))
    if h.size == 0:
        return None
    allowed = min(math.floor(max_fpr * h.size + 1e-9), h.size - 1)
    return float(h[h.size - 1 - allowed])


def _rate(k: int, n: int) -> float | None:
    return k / n if n else None


def _median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if len(values) else None


def _training_hashes(scorer: Scorer) -> set[str]:
    training = scorer.card.get("training")
    sources = training.get("sources") if isinstance(training, dict) else None
    return {s["sha256"] for s in sources or [] if isinstance(s, dict) and "sha256" in s}


def _recording_row(res: RecordingResult) -> dict[str, Any]:
    rec = res.rec
    scores = [w[2] for w in res.windows if w[2] is not None]
    start = rec.start_s
    after = [a for a in res.alerts if rec.faulty and a["t"] >= start]
    before = [a for a in res.alerts if not (rec.faulty and a["t"] >= start)]
    first = min(after, key=lambda a: a["t"]) if after else None
    return {
        "file": str(rec.path),
        "label": rec.label,
        "onset_s": rec.onset_s,
        "end_s": rec.end_s,
        "fs": res.fs,
        "in_training": res.in_training,
        "windows": len(res.windows),
        "flagged": sum(w[4] for w in res.windows),
        "scored": len(scores),
        "anomalous": sum(w[3] for w in res.windows),
        "outside_baseline": res.outside_baseline,
        "score_p50": _median(scores),
        "score_max": max(scores) if scores else None,
        # Alerts in the healthy part (all of a healthy recording, or before the onset).
        "false_alarms": [_alert_summary(a) for a in before],
        # Alerts from the onset on, and the first one's delay after it.
        "alerts": [_alert_summary(a) for a in after],
        "first_alert_after_s": first["t"] - start if first else None,
        "named_fault": (
            any(a["fault"] == rec.label for a in after) if rec.label in NAMED_FAULTS else None
        ),
    }


def _alert_summary(alert: dict[str, Any]) -> dict[str, Any]:
    return {"t": alert["t"], "fault": alert["fault"], "severity": alert["severity"]}


def summarize(
    results: Sequence[RecordingResult], scorer: Scorer, *, max_fpr: float = 0.01
) -> dict[str, Any]:
    """The evaluation report (JSON-ready): per recording, per window and per alert."""
    threshold = scorer.threshold
    healthy: list[float] = []
    faulty: list[float] = []
    unscored = crossing = seen_in_training = 0
    for res in results:
        for t0, t1, score, _, _ in res.windows:
            truth = res.rec.truth(t0, t1)
            if truth is None:
                crossing += 1
            elif score is None:
                unscored += 1
            else:
                (faulty if truth else healthy).append(score)
                seen_in_training += res.in_training and not truth
    fp = sum(s > threshold for s in healthy)
    tp = sum(s > threshold for s in faulty)
    t_target = threshold_for_fpr(healthy, max_fpr)
    rows = [_recording_row(res) for res in results]
    healthy_rows = [r for r in rows if r["label"] == HEALTHY]
    faulty_rows = [r for r in rows if r["label"] != HEALTHY]
    by_label: dict[str, Any] = {}
    for label in sorted({r["label"] for r in faulty_rows}):
        mine = [r for r in faulty_rows if r["label"] == label]
        faults = Counter(f for r in mine for f in {x["fault"] for x in r["alerts"]})
        by_label[label] = {
            "recordings": len(mine),
            "detected": sum(bool(r["alerts"]) for r in mine),
            "named": sum(bool(r["named_fault"]) for r in mine) if label in NAMED_FAULTS else None,
            "recordings_with_alert_of": dict(sorted(faults.items())),
        }
    delays = [r["first_alert_after_s"] for r in faulty_rows if r["first_alert_after_s"] is not None]
    return {
        "model": {
            "path": str(scorer.path),
            "id": model_id(scorer.card),
            "threshold": threshold,
            # Lines with a healthy level: without them no eccentricity or bearing alert.
            "line_baseline": sorted(scorer.baseline),
            # The healthy i2 (A) the stator rule judges by without voltages; null: i2/i1
            # itself is judged, a supply unbalance included.
            "negative_sequence": scorer.negative_sequence,
        },
        "recordings": rows,
        "windows": {
            "healthy": len(healthy),
            "healthy_from_training": seen_in_training,
            "faulty": len(faulty),
            "crossing_fault_edge": crossing,
            "unscored": unscored,
            "outside_baseline": sum(r["outside_baseline"] for r in rows),
            "false_positives": fp,
            "false_positive_rate": _rate(fp, len(healthy)),
            "detected": tp,
            "detection_rate": _rate(tp, len(faulty)),
            "precision": _rate(tp, tp + fp),
            "roc_auc": roc_auc(healthy, faulty),
            "max_fpr": max_fpr,
            "threshold_at_max_fpr": t_target,
            "detection_rate_at_max_fpr": (
                _rate(sum(s > t_target for s in faulty), len(faulty))
                if t_target is not None
                else None
            ),
        },
        "alerts": {
            "healthy_recordings": len(healthy_rows),
            "healthy_with_false_alarm": sum(bool(r["false_alarms"]) for r in healthy_rows),
            "faulty_with_false_alarm": sum(bool(r["false_alarms"]) for r in faulty_rows),
            "faulty_recordings": len(faulty_rows),
            "detected": sum(bool(r["alerts"]) for r in faulty_rows),
            "median_delay_s": _median(delays),
            "by_label": by_label,
        },
    }


def evaluate(
    labels: str | Path,
    config: Config,
    scorer: Scorer,
    *,
    fs: float | None = None,
    columns: Sequence[str] | None = None,
    max_fpr: float = 0.01,
) -> dict[str, Any]:
    """Run every recording of the labels file ``labels`` and return :func:`summarize`'s
    report. The labels file and every recording it lists are checked first."""
    recs = read_labels(labels)
    for rec in recs:  # a wrong column or rate fails now, not after an hour of analysis
        with open_recording(rec.path, fs=fs, columns=columns):
            pass
    trained_on = _training_hashes(scorer)
    results = []
    for rec in recs:
        res = run_recording(rec, config, scorer, fs=fs, columns=columns)
        res.in_training = sha256_file(rec.path) in trained_on
        results.append(res)
    return summarize(results, scorer, max_fpr=max_fpr)


# --- the report as text -------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _num(x: float | None, fmt: str = ".3g") -> str:
    return "-" if x is None else format(x, fmt)


def _span(onset: float | None, end: float | None) -> str:
    if onset is None and end is None:
        return ""
    if end is None:
        return f" from {onset:g} s"
    return f" {onset or 0.0:g}-{end:g} s"


def format_report(report: dict[str, Any]) -> str:
    """The report for a person: a table of recordings, then the window and alert figures."""
    m, w, a = report["model"], report["windows"], report["alerts"]
    any_onset = any(r["onset_s"] for r in report["recordings"])
    lines = [f"model {m['path']} (id {m['id']}), threshold {m['threshold']:.4g}", ""]
    rows = [("recording", "label", "windows", "anomalous", "score p50", "alerts")]
    for r in report["recordings"]:
        raised = r["false_alarms"] + r["alerts"]
        alerts = ", ".join(f"{x['fault']} {x['severity']} at {x['t']:.1f} s" for x in raised)
        label = r["label"] + _span(r["onset_s"], r["end_s"])
        rows.append(
            (Path(r["file"]).name + (" *" if r["in_training"] else ""), label, str(r["windows"]),
             str(r["anomalous"]), _num(r["score_p50"]), alerts or "-")
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:  # names to the left, numbers to the right, the alerts as they come
        cells = [row[i].ljust(n) if i < 2 else row[i].rjust(n) for i, n in enumerate(widths)]
        lines.append("  ".join([*cells, row[5]]))
    n_table = len(lines)  # the table keeps its width; the prose below is wrapped
    lines += [
        "",
        f"windows, by score against the threshold {m['threshold']:.4g}:",
        f"  healthy: {w['healthy']}, of which {w['false_positives']} anomalous "
        f"(false-positive rate {_pct(w['false_positive_rate'])})",
        f"  faulty:  {w['faulty']}, of which {w['detected']} anomalous "
        f"(detection rate {_pct(w['detection_rate'])})",
        f"  ROC AUC {_num(w['roc_auc'])} (1 = every faulty window scores above every "
        "healthy one, 0.5 = chance)",
    ]
    if w["threshold_at_max_fpr"] is not None:
        lines.append(
            f"  a threshold of {w['threshold_at_max_fpr']:.4g} would keep false positives at "
            f"or below {_pct(w['max_fpr'])} on these healthy windows; detection rate "
            f"{_pct(w['detection_rate_at_max_fpr'])}"
        )
    if w["crossing_fault_edge"] or w["unscored"]:
        lines.append(
            f"  left out: {w['crossing_fault_edge']} crossing an edge of a fault's span, "
            f"{w['unscored']} without a score (a data problem, or the motor stopped)"
        )
    if w["outside_baseline"]:
        which = sum(bool(r["outside_baseline"]) for r in report["recordings"])
        lines.append(
            f"  {w['outside_baseline']} windows of {which} recording{'s' * (which > 1)} ran "
            "outside the model's "
            "baseline (a lighter load or another supply frequency than its training): "
            "counted above by their scores, but in the pipeline they raise no anomaly alert "
            "and are not marked anomalous"
        )
    if w["healthy_from_training"]:
        lines.append(
            f"  * {w['healthy_from_training']} of the {w['healthy']} healthy windows come from "
            "recordings the model was trained on: their scores are in-sample, so the "
            "false-positive rate and the suggested threshold flatter the model"
        )
    lines += [
        "",
        "alerts:",
        f"  false alarms: {a['healthy_with_false_alarm']} of {a['healthy_recordings']} "
        "healthy recordings raised an alert"
        + (
            f"; {a['faulty_with_false_alarm']} faulty ones before the fault began"
            if any_onset
            else ""
        ),
        f"  detections: {a['detected']} of {a['faulty_recordings']} faulty recordings raised "
        "an alert"
        + (
            f", the first a median {a['median_delay_s']:.1f} s after the fault began"
            if a["median_delay_s"] is not None
            else ""
        ),
    ]
    for label, s in a["by_label"].items():
        named = "" if s["named"] is None else f", named {label} in {s['named']}"
        kinds = ", ".join(f"{f} {n}" for f, n in s["recordings_with_alert_of"].items())
        lines.append(
            f"  {label}: {s['detected']} of {s['recordings']} with an alert{named}"
            + (f" (alerts of {kinds})" if kinds else "")
        )
        if label in BASELINE_LINES and not set(BASELINE_LINES[label]) & set(m["line_baseline"]):
            lines.append(
                f"    the model has no healthy level of the {label} lines, so no alert could "
                "name it: train a model on recordings of this motor (edge-agent train)"
            )
    wrapped = [
        textwrap.fill(line, 88, subsequent_indent="    ") if line.startswith("  ") else line
        for line in lines[n_table:]
    ]
    return "\n".join(lines[:n_table] + wrapped) + "\n"
