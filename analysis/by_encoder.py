"""The encoder comparison: the same metric side by side across encoders (by_encoder.csv).

Stein et al. 2023's main finding reads straight off this table: FD on DINOv2 tracks
people where FD on Inception does not. One row per (dataset, metric, encoder), plus
rows with dataset "pooled" for the mean over datasets; extra scores (no encoder) have
an empty encoder.
"""

from __future__ import annotations

import pandas as pd

from percept.errors import PerceptError

POOLED = "pooled"
COLUMNS = [
    "dataset",
    "metric",
    "encoder",
    "pretrained",
    "kendall",
    "kendall_low",
    "kendall_high",
    "spearman",
    "n_models",
    "datasets",
    "few_models",
    "status",
    "versus_best",
]


def by_encoder(correlations: pd.DataFrame, pooled: pd.DataFrame) -> pd.DataFrame:
    """by_encoder.csv from uncertainty.annotate()'s and uncertainty.pooled()'s tables.

    `n_models` is the models behind the coefficient (pooled: summed over the datasets
    it was computed in, counted in `datasets`); a measure computed in no dataset gets a
    pooled row with status "not computed in any dataset".
    """
    if (correlations["dataset"].astype(str) == POOLED).any():
        raise PerceptError(
            f"a dataset is named {POOLED!r}, the name by_encoder.csv gives the pooled rows; "
            "rename that dataset in human.csv and metrics.csv"
        )
    rows = correlations.assign(
        encoder=correlations["encoder"].fillna(""),
        n_models=correlations["models"],
        datasets=(correlations["status"] == "ok").astype(int),
    )
    info = correlations.drop_duplicates("measure").set_index("measure")
    everywhere = pd.DataFrame({"measure": info.index.to_numpy()})
    together = everywhere.merge(pooled, on="measure", how="left", suffixes=("_info", ""))
    for column in ("encoder", "metric", "pretrained"):
        together[column] = together["measure"].map(info[column])
    together = together.assign(
        dataset=POOLED,
        encoder=together["encoder"].fillna(""),
        n_models=together["models"].fillna(0).astype(int),
        datasets=together["datasets"].fillna(0).astype(int),
        few_models=together["few_models"].astype("boolean").fillna(False).astype(bool),
        versus_best=together["versus_best"].fillna(""),
        status=together["kendall"].notna().map({True: "ok", False: "not computed in any dataset"}),
    )
    table = pd.concat([rows[COLUMNS], together[COLUMNS]], ignore_index=True)
    table["pretrained"] = table["pretrained"].fillna(True).astype(bool)
    table["n_models"] = table["n_models"].astype("Int64")
    order = table["dataset"].eq(POOLED)
    return (
        table.assign(_pooled=order)
        .sort_values(["_pooled", "dataset", "metric", "encoder"], kind="stable")
        .drop(columns="_pooled")
        .reset_index(drop=True)
    )
