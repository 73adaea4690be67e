"""Numbers as the reports write them: three significant figures, signed differences, intervals.

One place for the format every shared page uses (the index, the notebooks' tables, the answer),
so a value reads the same wherever it appears.
"""
from __future__ import annotations

import math


def sig3(x) -> str:
    """``x`` at three significant figures (``0.56234`` -> ``"0.562"``, ``12345.6`` -> ``"12300"``,
    ``0.000123456`` -> ``"0.000123"``, ``3.7512e-40`` -> ``"3.75e-40"``: below 1e-4 and from 1e6 in
    scientific notation); ``""`` for None or NaN. Signed values keep their sign."""
    if x is None:
        return ""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return ""
    if v == 0:
        return "0"
    if abs(v) < 1e-4 or abs(v) >= 1e6:  # p-values such as 3.75e-40: no run of zeros
        return f"{v:.2e}"
    digits = 3 - int(math.floor(math.log10(abs(v)))) - 1
    v = round(v, digits)
    digits = 3 - int(math.floor(math.log10(abs(v)))) - 1  # 99.96 rounds to 100: one digit fewer
    return f"{round(v, digits):.{max(digits, 0)}f}"


def signed3(x) -> str:
    """:func:`sig3` with a leading ``+`` on positive values (differences: ``"+0.0880"`` style)."""
    s = sig3(x)
    return f"+{s}" if s and not s.startswith("-") and s != "0" else s


def with_interval(value, low, high, signed: bool = False) -> str:
    """``"0.562 [0.551, 0.573]"``: a value and its 95% interval at three significant figures (the
    interval left out when NaN). ``signed`` writes ``+`` on positive values (differences)."""
    f = signed3 if signed else sig3
    text = f(value)
    if text and f(low) and f(high):
        text += f" [{f(low)}, {f(high)}]"
    return text
