"""ROC, precision-recall, confusion, calibration and by-month plots: PNGs for MLflow, CSVs for
`dvc plots`."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: stages run in Airflow tasks and CI
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import ConfusionMatrixDisplay, precision_recall_curve, roc_curve


def write_plots(folder: Path, y_true: np.ndarray, probability: np.ndarray, threshold: float) -> list[Path]:
    """Write roc.csv, pr.csv and roc/pr/confusion PNGs into `folder`; return the PNG paths."""
    folder.mkdir(parents=True, exist_ok=True)
    fpr, tpr, _ = roc_curve(y_true, probability)
    precision, recall, _ = precision_recall_curve(y_true, probability)
    roc = _thin(pd.DataFrame({"fpr": fpr, "tpr": tpr}))
    pr = _thin(pd.DataFrame({"recall": recall, "precision": precision}))
    roc.to_csv(folder / "roc.csv", index=False)
    pr.to_csv(folder / "pr.csv", index=False)
    images = [
        _line(folder / "roc.png", roc, "fpr", "tpr", "ROC curve"),
        _line(folder / "pr.png", pr, "recall", "precision", "Precision-recall curve"),
    ]
    figure, axes = plt.subplots(figsize=(4, 4))
    ConfusionMatrixDisplay.from_predictions(y_true, probability >= threshold, ax=axes, colorbar=False)
    axes.set_title(f"Confusion (threshold {threshold:.3f})")
    images.append(_save(figure, folder / "confusion.png"))
    return images


def write_time_plots(folder: Path, by_month: pd.DataFrame, y_true: np.ndarray, probability: np.ndarray) -> list[Path]:
    """by_month.csv + auc_by_month.png (one row per month: roc_auc, f1, positive_rate, ...) and
    calibration.csv + calibration.png (10 equal-width bins of predicted probability)."""
    folder.mkdir(parents=True, exist_ok=True)
    by_month.round(5).to_csv(folder / "by_month.csv", index=False)
    fraction, predicted = calibration_curve(y_true, probability, n_bins=10, strategy="uniform")
    calibration = pd.DataFrame({"mean_predicted": predicted, "fraction_severe": fraction}).round(5)
    calibration.to_csv(folder / "calibration.csv", index=False)

    figure, axes = plt.subplots(figsize=(6, 4))
    positions = np.arange(len(by_month))
    axes.plot(positions, by_month["roc_auc"], marker="o", label="ROC AUC")
    axes.plot(positions, by_month["f1"], marker="s", label="F1")
    axes.plot(positions, by_month["positive_rate"], linestyle="--", label="severe share")
    axes.set_xticks(positions, list(by_month["month"]), rotation=45)
    axes.set_ylim(0, 1)
    axes.set_title("Test period by month")
    axes.legend(loc="lower left")
    images = [_save(figure, folder / "auc_by_month.png")]

    figure, axes = plt.subplots(figsize=(4, 4))
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.plot(calibration["mean_predicted"], calibration["fraction_severe"], marker="o")
    axes.set_xlabel("mean predicted probability")
    axes.set_ylabel("fraction severe")
    axes.set_title("Calibration")
    images.append(_save(figure, folder / "calibration.png"))
    return images


def _thin(frame: pd.DataFrame, points: int = 400) -> pd.DataFrame:
    """Keep plot files small: at most `points` evenly spaced rows."""
    step = max(1, len(frame) // points)
    return frame.iloc[::step].round(5)


def _line(path: Path, frame: pd.DataFrame, x: str, y: str, title: str) -> Path:
    figure, axes = plt.subplots(figsize=(4, 4))
    axes.plot(frame[x], frame[y])
    axes.set_xlabel(x)
    axes.set_ylabel(y)
    axes.set_title(title)
    return _save(figure, path)


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
