"""Plot the training and validation loss of a run from its Lightning CSV log.

    python scripts/plot_training.py runs/perov5_csp --out docs/perov5_csp_loss.png
    python scripts/plot_training.py checkpoints/training/mp20_csp_wide_long --until-step 28000 --out docs/mp20_csp_loss.png

RUN is a run folder (its ``logs/metrics.csv``) or a folder holding ``metrics.csv`` itself (a
run's state committed under ``checkpoints/training/``). ``--until-step`` stops the curves at
the step of the bundled weights when the run went on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run folder (holds logs/metrics.csv, or metrics.csv)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--until-step", type=int, metavar="STEP", help="plot steps up to STEP only")
    args = parser.parse_args(argv)

    log_path = args.run / "logs" / "metrics.csv"
    log = pd.read_csv(log_path if log_path.exists() else args.run / "metrics.csv")
    if args.until_step is not None:
        log = log[log["step"] <= args.until_step]
    fields = sorted({c.split("/", 1)[1] for c in log.columns if c.startswith("val/")})
    fig, axes = plt.subplots(1, len(fields), figsize=(4 * len(fields), 3.2), squeeze=False)
    for ax, field in zip(axes[0], fields):
        train = log[["step", f"train/{field}"]].dropna()
        val = log[["step", f"val/{field}"]].dropna()
        ax.plot(train["step"], train[f"train/{field}"].rolling(10, min_periods=1).mean(), lw=0.8, label="train (10-log mean)")
        ax.plot(val["step"], val[f"val/{field}"], "o-", ms=2, lw=1, label="validation")
        ax.set_xlabel("optimiser step")
        ax.set_title(field)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(args.run.name)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
