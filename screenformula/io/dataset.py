"""`ScreenData` as an xarray Dataset and back: how a saved fit stores its screen."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xarray as xr

from screenformula.io.screen_data import ScreenData

__all__ = ["screen_data_from_dataset", "screen_data_to_dataset"]


def screen_data_to_dataset(data: ScreenData) -> xr.Dataset:
    """The screen data as an xarray Dataset (saved inside a fit file)."""
    ds = xr.Dataset(
        {
            "counts": (("sgrna", "sample"), data.counts),
            "gene": ("sgrna", data.genes_of_sgrna.astype(str)),
            "control": ("sgrna", data.controls.astype(np.int8)),
            "size_factor": ("sample", data.size_factors.to_numpy()),
        },
        coords={
            "sgrna": data.sgrnas.astype(str).to_numpy(),
            "sample": data.samples.index.astype(str).to_numpy(),
        },
    )
    columns = []
    for column in data.samples.columns:
        values = data.samples[column]
        if values.dtype == bool:
            ds[f"sheet_{column}"] = ("sample", values.to_numpy().astype(np.int8))
            kind = "bool"
        elif pd.api.types.is_numeric_dtype(values):
            ds[f"sheet_{column}"] = ("sample", values.to_numpy())
            kind = "number"
        else:
            ds[f"sheet_{column}"] = ("sample", values.astype(str).to_numpy())
            kind = "text"
        columns.append([column, kind])
    if data.gene_groups is not None:
        ds["gene_group"] = ("gene_name", data.gene_groups.to_numpy().astype(str))
        ds = ds.assign_coords(gene_name=data.gene_names.astype(str).to_numpy())
    ds.attrs["sheet_columns"] = json.dumps(columns)
    ds.attrs["size_factor_method"] = data.size_factor_method
    ds.attrs["source"] = data.source or ""
    return ds


def screen_data_from_dataset(ds: xr.Dataset) -> ScreenData:
    """Rebuild `ScreenData` from `screen_data_to_dataset`'s output."""
    sheet = pd.DataFrame(index=pd.Index(ds["sample"].values.astype(str), name="sample"))
    for column, kind in json.loads(ds.attrs["sheet_columns"]):
        values = ds[f"sheet_{column}"].values
        sheet[column] = (
            values.astype(bool)
            if kind == "bool"
            else (values if kind == "number" else values.astype(str))
        )
    groups = None
    if "gene_group" in ds:
        groups = pd.Series(ds["gene_group"].values.astype(str), index=ds["gene_name"].values)
    method = ds.attrs.get("size_factor_method", "given")
    return ScreenData(
        ds["counts"].values.astype(np.int64),
        ds["sgrna"].values.astype(str),
        ds["gene"].values.astype(str),
        sheet,
        gene_groups=groups,
        controls=ds["control"].values.astype(bool),
        size_factors=ds["size_factor"].values if method == "given" else method,
        source=ds.attrs.get("source") or None,
    )
