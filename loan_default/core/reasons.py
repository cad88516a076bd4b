"""SHAP values in plain words: "Credit score 612 raised the risk".

The model sees several columns per input field (a scaled value and a missing indicator, or one 0/1 column per code);
an underwriter thinks in fields. So SHAP values (additive on the log-odds scale) are summed per field: the sum keeps
additivity (``base + sum == logit``) and gives one reason per thing the borrower can recognise. Engineered features
(SATO, the 0/1 flags) stay reasons of their own, with their value computed from the loan.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from loan_default.core import features as ft
from loan_default.core.preprocess import Preprocessor
from loan_default.freddie.schema import ORIGINATION_FIELDS, Kind

_UNITS = {
    "mi_pct": "%",
    "cltv": "%",
    "dti": "%",
    "ltv": "%",
    "orig_rate": "%",
    "orig_upb": "$",
    "orig_term": " months",
    "sato": " percentage points",
    "cltv_minus_ltv": " percentage points",
}
_UNIT_IN_LABEL = re.compile(r"\s*(\((%|log \$|\$|months)\)|%)$")


def group_of(column: str) -> str:
    """The input field a model column belongs to (``dti_missing`` -> ``dti``, ``occupancy_I`` -> ``occupancy``);
    engineered features are their own group."""
    if column in ft.ENGINEERED_NUMERIC or column in ft.ENGINEERED_FLAGS or column in ft.INPUT_FIELDS:
        return column
    if column.endswith("_missing") and column[: -len("_missing")] in ft.INPUT_FIELDS:
        return column[: -len("_missing")]
    for field in ft.ONE_HOT_FIELDS:
        if column.startswith(field + "_"):
            return field
    return column


class ReasonBuilder:
    """Groups a bundle's SHAP columns by input field and words each group's contribution."""

    def __init__(self, preprocessor: Preprocessor) -> None:
        columns = preprocessor.numeric_names + preprocessor.categorical_names
        groups: dict[str, list[int]] = {}
        for j, column in enumerate(columns):
            groups.setdefault(group_of(column), []).append(j)
        self.groups = list(groups)
        # (columns, groups) 0/1 matrix: SHAP values @ matrix = one value per group.
        self.matrix = np.zeros((len(columns), len(groups)))
        for g, members in enumerate(groups.values()):
            self.matrix[members, g] = 1.0
        display = preprocessor.display_names
        self._labels = {g: _strip_unit(display.get(g, ft.FIELD_LABELS.get(g, g))) for g in self.groups}
        self._column = {g: members[0] for g, members in groups.items()}
        state = preprocessor.state()["rate_table"]
        self._rates = ft.RateTable(np.asarray(state["months"], dtype=np.int64), np.asarray(state["means"]))

    def contributions(self, loan: Mapping[str, Any], x_num: np.ndarray, grouped: np.ndarray) -> list[dict[str, Any]]:
        """Every group's contribution for one loan, largest (most risk-raising) first.

        ``loan`` is the validated request, ``x_num`` its model row and ``grouped`` its SHAP values per group.
        """
        engineered = ft.engineered_numeric(ft.loan_columns(loan), self._rates)
        out = []
        for g, name in enumerate(self.groups):
            value, words = self._value(name, loan, x_num, engineered)
            contribution = float(grouped[g])
            direction = "raised" if contribution > 0 else "lowered" if contribution < 0 else "did not change"
            label = self._labels[name]
            out.append(
                {
                    "feature": name,
                    "label": label,
                    "value": value,
                    "contribution": contribution,
                    "text": f"{label}{words} {direction} the risk",
                }
            )
        out.sort(key=lambda c: -c["contribution"])
        return out

    def _value(
        self, name: str, loan: Mapping[str, Any], x_num: np.ndarray, engineered: Mapping[str, np.ndarray]
    ) -> tuple[float | str | None, str]:
        """(the loan's value, how it reads after the label)."""
        if name in ft.NUMERIC_FIELDS:
            number = ft.parse_value(name, loan.get(name))
            if isinstance(number, float) and not ORIGINATION_FIELDS[name].in_range(number):  # NaN is out of range
                return None, " not available"
            if ORIGINATION_FIELDS[name].kind is Kind.INT:
                number = int(number)
            return number, " " + _format_number(name, number)
        if name in ft.ONE_HOT_FIELDS:
            code = ft.parse_value(name, loan.get(name))
            if code is None:
                return None, ": not available"
            return code, ": " + ft.code_label(name, str(code)).split(": ", 1)[1]
        if name in ft.CATEGORICAL_FIELDS:
            text = ft.parse_value(name, loan.get(name))
            return (None, ": not available") if text is None else (text, f": {text}")
        if name in engineered:
            number = float(engineered[name][0])
            return (None, " not available") if math.isnan(number) else (number, " " + _format_number(name, number))
        if name in ft.ENGINEERED_FLAGS:
            flag = bool(x_num[self._column[name]] > 0.5)
            return ("yes" if flag else "no"), (": yes" if flag else ": no")
        scaled = float(x_num[self._column[name]])  # a column this module does not know: show the model's input
        return scaled, f" {scaled:.3g} (scaled)"


def _strip_unit(label: str) -> str:
    """``Debt-to-income (%)`` -> ``Debt-to-income``: the unit goes with the value instead ("45%")."""
    return _UNIT_IN_LABEL.sub("", label)


def _format_number(name: str, number: float) -> str:
    unit = _UNITS.get(name, "")
    if unit == "$":
        return f"${number:,.0f}"
    if unit == " percentage points":
        return f"{number:+.2f}{unit}"
    return f"{number:g}{unit}"
