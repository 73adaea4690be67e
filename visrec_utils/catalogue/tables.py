"""Tables as people export them: CSV dialects and encodings, numbers in any locale, times in any unit.

Used by :mod:`visrec_utils.catalogue.readers` for every CSV it reads. Three things are detected, and each
can be set instead (reader options in ``visrec.json``, see :class:`~visrec_utils.catalogue.readers.CatalogueSpec`):

* **CSV dialect** (:func:`read_csv_table`): the *encoding* (a byte-order mark says UTF-8,
  UTF-16 or UTF-32, as Excel's "Unicode text" writes it; UTF-16 without a BOM is recognised by
  its zero bytes; else UTF-8, and a file that is not valid UTF-8 is read as cp1252, the Windows
  code page of Western European Excel, or latin-1 if cp1252 leaves a byte undefined), *quoting*
  (``csv.Sniffer``'s guess of ``"`` or ``'``), the *delimiter* (``,`` ``;`` tab ``|``; an Excel
  ``sep=;`` first line wins) and the *decimal separator* (``,`` when numbers such as ``1,5`` or
  ``1.600.000,5`` appear and none such as ``1.5``). Option: ``csv_encoding, csv_quotechar,
  csv_sep, csv_decimal``.
* **Numbers** (:func:`to_number`): the detected decimal separator; thousands separators are
  removed when they are unambiguous (``1.600.000.000``, ``1,600,000``, spaces).
* **Times** (:func:`parse_times`): numbers are Unix epochs whose unit is read from their
  magnitudes (or option ``time_unit``), text is ISO 8601 (or a day-first / month-first /
  ISO-week format found by trying a short list, or option ``time_format``).

Bad input never ends in a traceback: a file that cannot be parsed is a
:class:`~visrec_utils.catalogue.data.DataError` of one line naming the file, the line and the option that
fixes it; a value that cannot be a time becomes NaT so the reader drops and lists its row.
"""
from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

from .data import DataError

SEPS = (",", ";", "\t", "|")
TIME_UNITS = ("s", "ms", "us", "ns", "excel")
UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
NS_PER = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1, "excel": 86_400 * 10**9}
EXCEL_EPOCH_DAYS = 25_569  # Excel's day 25569 is 1970-01-01 (1900 date system, days since 1899-12-30)
EXCEL_RANGE = (20_000, 80_000)  # Excel serial days 1954-10-03 .. 2119-01-10
SAMPLE_BYTES = 1 << 16
NS_MAX = np.iinfo(np.int64).max  # int64 min is NaT, so valid times are within +-NS_MAX
# day-first / month-first / ISO-week formats tried when text is not ISO 8601
TIME_FORMATS = ("%d.%m.%Y", "%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S", "%d/%m/%Y", "%m/%d/%Y", "%d/%m/%Y %H:%M",
                "%m/%d/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S", "%d-%m-%Y", "%G-W%V-%u",
                # month names as spreadsheets and reports write them (English, C locale): 1 Mar 2020, March 1, 2020
                "%d %b %Y", "%d %B %Y", "%b %d, %Y", "%B %d, %Y", "%d-%b-%Y", "%d %b %Y %H:%M", "%b %d, %Y %H:%M")
_SCI_ID = re.compile(r"[+-]?\d+(?:[.,]\d+)?[eE][+-]\d+")


@dataclass(frozen=True)
class CsvDialect:
    """How a CSV file was read; ``detected`` names the fields that were detected, not set."""

    sep: str
    decimal: str
    quotechar: str
    encoding: str
    skiprows: int = 0
    detected: tuple = ()
    encoding_note: str = ""

    def describe(self) -> str:
        """One line for the validation report, e.g. ``delimiter ';', decimal ',', ... (detected)``."""
        def how(name, note=""):
            return f" (detected{note})" if name in self.detected else " (set)"
        sep = "tab" if self.sep == "\t" else repr(self.sep)
        sep_note = ": 'sep=' line" if self.skiprows else ""
        return (f"delimiter {sep}{how('sep', sep_note)}, decimal {self.decimal!r}{how('decimal')}, "
                f"quotechar {self.quotechar!r}{how('quotechar')}, "
                f"encoding {self.encoding}{how('encoding', self.encoding_note)}")


def check_options(sep=None, decimal=None, quotechar=None, encoding=None, time_unit=None, time_format=None) -> None:
    """Validate the CSV and time reader options.

    Raises:
        DataError: naming the option, the value and the valid values.
    """
    for name, v in (("csv_sep", sep), ("csv_quotechar", quotechar)):
        if v is not None and (not isinstance(v, str) or len(v) != 1):
            raise DataError(f"Reader option {name}={v!r} must be one character, e.g. ',' ';' '\\t' '|' (or unset to detect).")
    if decimal is not None and decimal not in (".", ","):
        raise DataError(f"Reader option csv_decimal={decimal!r} must be '.' or ',' (or unset to detect).")
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except (LookupError, TypeError):
            raise DataError(f"Reader option csv_encoding={encoding!r} is not a known encoding; use e.g. 'utf-8', "
                            "'utf-8-sig', 'utf-16', 'cp1252', 'latin-1' (or unset to detect).") from None
    if time_unit is not None and time_unit not in TIME_UNITS:
        raise DataError(f"Reader option time_unit={time_unit!r} is not one of {list(TIME_UNITS)} "
                        "(Unix epoch seconds, milliseconds, microseconds, nanoseconds, Excel serial days).")
    if time_unit is not None and time_format is not None:
        raise DataError("Set either time_unit (numeric times) or time_format (text times), not both.")


def _bom_encoding(head: bytes) -> str | None:
    for bom, enc in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
                     (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if head.startswith(bom):
            return enc
    if len(head) >= 8 and head[1::2].count(0) > 0.4 * len(head) / 2 and head[0::2].count(0) == 0:
        return "utf-16-le"  # ASCII text in UTF-16 without a BOM: every second byte is zero
    if len(head) >= 8 and head[0::2].count(0) > 0.4 * len(head) / 2 and head[1::2].count(0) == 0:
        return "utf-16-be"
    return None


def _first_bad_byte(path: Path, encoding: str) -> tuple[int, int]:
    """(byte offset, 1-based line) of the first byte ``encoding`` cannot decode; (-1, -1) if none."""
    dec = codecs.getincrementaldecoder(encoding)()
    offset = lines = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            pending = dec.getstate()[0]
            try:
                dec.decode(chunk)
            except UnicodeDecodeError as e:
                start = max(e.start - len(pending), 0)
                return offset + start, lines + chunk[:start].count(b"\n") + 1
            offset += len(chunk)
            lines += chunk.count(b"\n")
    return -1, -1


def _detect_sep(text: str, quotechar: str) -> str:
    """The delimiter giving the header's field count (>1) on every sampled line; most fields wins.

    Not ``csv.Sniffer``'s delimiter: on ``a;b;1,5`` rows its preference order can pick ``,``.
    Without a consistent candidate, the one splitting the header most (the parser then names
    the line that disagrees).
    """
    best, best_n, fallback, fallback_n = None, 1, ",", 1
    for d in SEPS:
        counts = [len(r) for r in csv.reader(io.StringIO(text), delimiter=d, quotechar=quotechar) if r]
        if not counts:
            continue
        if counts[0] > best_n and all(c == counts[0] for c in counts[1:]):
            best, best_n = d, counts[0]
        if counts[0] > fallback_n:
            fallback, fallback_n = d, counts[0]
    return best or fallback


_AMBIGUOUS_NUMBER = re.compile(r"[+-]?[1-9]\d{0,2}[.,]\d{3}")  # 1,500 / 1.500: thousands or decimals?


def _only_readable_with(decimal: str, cell: str) -> bool:
    """True for numbers only ``decimal`` explains (``1,5``, ``1.600,25``, ``1.600.000`` for ','; not ``1,500``)."""
    d, t = re.escape(decimal), re.escape("." if decimal == "," else ",")
    pattern = rf"[+-]?(\d*{d}\d+|[1-9]\d{{0,2}}({t}\d{{3}}){{2,}}({d}\d+)?|[1-9]\d{{0,2}}{t}\d{{3}}{d}\d+)"
    return bool(re.fullmatch(pattern, cell)) and not _AMBIGUOUS_NUMBER.fullmatch(cell)


def _detect_decimal(text: str, sep: str, quotechar: str) -> str:
    """',' when the sample has numbers only a decimal comma explains and none only a decimal point explains."""
    cells = [c.strip() for r in csv.reader(io.StringIO(text), delimiter=sep, quotechar=quotechar) for c in r[:50]]
    comma, dot = (sum(_only_readable_with(d, c) for c in cells) for d in (",", "."))
    return "," if comma and not dot else "."


def sniff_dialect(path: Path, sep=None, decimal=None, quotechar=None, encoding=None) -> CsvDialect:
    """Detect what is not set: encoding, Excel ``sep=`` line, quotechar, delimiter, decimal (from the first 64 KiB)."""
    with open(path, "rb") as f:
        head = f.read(SAMPLE_BYTES)
    detected = tuple(n for n, v in (("sep", sep), ("decimal", decimal), ("quotechar", quotechar), ("encoding", encoding))
                     if v is None)
    enc = encoding or _bom_encoding(head) or "utf-8"
    text = head.decode(enc, errors="replace")
    if len(head) == SAMPLE_BYTES:
        text = text[: text.rfind("\n") + 1]  # whole lines only
    text = text.lstrip("\ufeff")
    skip = 0
    m = re.match(r"sep=(.)\r?\n", text)
    if m:  # Excel's "sep=;" first line
        skip, text = 1, text[m.end():]
        sep = sep or m.group(1)
    if quotechar is None:
        try:
            quotechar = csv.Sniffer().sniff(text, delimiters="".join(SEPS)).quotechar
        except csv.Error:
            quotechar = '"'
        quotechar = quotechar if quotechar in ('"', "'") else '"'
    sep = sep or _detect_sep(text, quotechar)
    decimal = decimal or _detect_decimal(text, sep, quotechar)
    return CsvDialect(sep, decimal, quotechar, enc, skip, detected)


def read_csv_table(path: Path, sep=None, decimal=None, quotechar=None, encoding=None) -> tuple[pd.DataFrame, CsvDialect]:
    """Read a CSV as spreadsheet programs write it, every column as text (ids keep leading zeros).

    Args:
        path: the CSV file.
        sep, decimal, quotechar, encoding: set to override detection (None = detect).

    Returns:
        (frame of str columns, missing cells NaN; entirely empty ``Unnamed: N`` columns, as a
        trailing delimiter makes, are dropped), and the dialect used.

    Raises:
        DataError: one line naming the file, the line and the option that fixes it (ragged
            rows, an unclosed quote, bytes the encoding cannot decode).
    """
    d = sniff_dialect(path, sep, decimal, quotechar, encoding)
    enc_note = ""
    while True:
        try:
            df = pd.read_csv(path, sep=d.sep, quotechar=d.quotechar, encoding=d.encoding, skiprows=d.skiprows,
                             dtype=str, keep_default_na=False, na_values=[""], index_col=False)
            break
        except UnicodeDecodeError:
            pos, line = _first_bad_byte(path, d.encoding)
            if "encoding" not in d.detected or d.encoding not in ("utf-8", "cp1252"):
                raise DataError(f"{path.name} line {line} (byte {pos}): not valid {d.encoding}; set csv_encoding in "
                                "visrec.json to the file's encoding (e.g. 'cp1252', 'utf-16', 'latin-1').") from None
            enc_note = f": not UTF-8 at line {line}"
            d = CsvDialect(d.sep, d.decimal, d.quotechar, "cp1252" if d.encoding == "utf-8" else "latin-1",
                           d.skiprows, d.detected)
        except pd.errors.ParserError as e:
            raise DataError(_parser_message(path, d, str(e))) from None
        except pd.errors.EmptyDataError:
            raise DataError(f"{path} is empty; it needs a header line and one row per line.") from None
    df.columns = [str(c).strip() for c in df.columns]
    unnamed = [c for c in df.columns if c.startswith("Unnamed: ") and df[c].isna().all()]
    df = df.drop(columns=unnamed)
    return df, CsvDialect(d.sep, d.decimal, d.quotechar, d.encoding, d.skiprows, d.detected, enc_note)


def _parser_message(path: Path, d: CsvDialect, err: str) -> str:
    how = lambda opt, v: f"{'detected' if opt in d.detected else 'set to'} {v!r}"  # noqa: E731
    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", err)
    if m:
        return (f"{path.name} line {m.group(2)}: expected {m.group(1)} fields, saw {m.group(3)}; "
                f"set csv_sep in visrec.json ({how('sep', d.sep)}) or quote fields that contain it.")
    m = re.search(r"EOF inside string starting at row (\d+)", err)
    if m:
        return (f"{path.name} line {int(m.group(1)) + 1}: a quoted field is never closed; "
                f"set csv_quotechar in visrec.json ({how('quotechar', d.quotechar)}) or close the quote.")
    return f"{path.name}: cannot be read as CSV ({err.strip().splitlines()[-1]}); set csv_sep / csv_quotechar in visrec.json."


def check_ids(ids: pd.Series, file: str, column: str, lines: pd.Series) -> None:
    """Refuse ids a spreadsheet turned into numbers in scientific notation (``4.93995E+08``: digits lost).

    Raises:
        DataError: naming the file, the first line, the column and how to re-export.
    """
    sci = ids.astype("string").str.strip().str.fullmatch(_SCI_ID.pattern).fillna(False).to_numpy(dtype=bool)
    if sci.any():
        first = np.flatnonzero(sci)[0]
        raise DataError(f"{file} line {lines.iloc[first]}: id {ids.iloc[first]!r} in column '{column}' is in scientific "
                        f"notation ({int(sci.sum())} rows), so its digits are lost; re-export with that column "
                        "formatted as Text.")


def to_number(s: pd.Series, decimal: str = ".") -> pd.Series:
    """Text -> numbers (int64 when all are integers, else float64; NaN where not a number).

    ``decimal`` is the decimal separator. Spaces and unambiguous thousands separators
    (``1.600.000`` or ``1,600,000``: two or more groups of three digits, or one group before the
    decimal separator) are removed. Numeric input is returned as it is.
    """
    if pd.api.types.is_numeric_dtype(s):
        return s
    return pd.to_numeric(_normalise_numbers(s, decimal).astype(str), errors="coerce")


def _normalise_numbers(s: pd.Series, decimal: str) -> pd.Series:
    thousands = "." if decimal == "," else ","
    t = s.astype("string").str.strip().str.replace(r"[\s\u00a0\u202f']", "", regex=True)
    grouped = t.str.fullmatch(rf"[+-]?[1-9]\d{{0,2}}(\{thousands}\d{{3}}){{2,}}(\{decimal}\d+)?|"
                              rf"[+-]?[1-9]\d{{0,2}}\{thousands}\d{{3}}\{decimal}\d+").fillna(False)
    t = t.where(~grouped, t.str.replace(thousands, "", regex=False))
    return t.str.replace(",", ".", regex=False) if decimal == "," else t


def magnitude_unit(num: np.ndarray) -> np.ndarray:
    """Epoch unit by magnitude, per value: |x| < 1e11 s, < 1e14 ms, < 1e17 us, else ns (see :func:`parse_times`)."""
    a = np.abs(num)
    return np.select([a < 1e11, a < 1e14, a < 1e17], ["s", "ms", "us"], "ns")


def _epoch_to_ns(text: pd.Series, num: pd.Series, unit: str) -> np.ndarray:
    """Numbers in ``unit`` -> int64 ns; NaT (int64 min) where out of the datetime64[ns] range.

    Exact: integers below 2**53 in int64 arithmetic, others (``1600000000123456789`` ns,
    ``1600000001.3`` s) from their text with :class:`decimal.Decimal`, not through a float.
    """
    factor, offset = NS_PER[unit], (EXCEL_EPOCH_DAYS if unit == "excel" else 0)
    out = np.full(len(num), np.iinfo(np.int64).min, dtype=np.int64)
    vals = num.to_numpy(dtype="float64") - offset
    with np.errstate(invalid="ignore"):
        ok = np.abs(vals) < NS_MAX / factor * (1 - 1e-9)
    small = ok & (np.abs(vals) < 2**53) & text.str.fullmatch(r"[+-]?\d+").fillna(False).to_numpy(dtype=bool)
    out[small] = vals[small].astype(np.int64) * factor
    rest = ok & ~small
    out[rest] = [int(((Decimal(x) - offset) * factor).to_integral_value()) for x in text.to_numpy()[rest]]
    return out


def parse_times(raw: pd.Series, fmt: str | None = None, unit: str | None = None, decimal: str = ".") -> tuple[pd.Series, str]:
    """Times in any common export form -> ``datetime64[ns]`` (naive UTC), NaT where not a time.

    Rules, per value:

    * ``fmt`` set: text parsed with that strptime format.
    * a number (decimals allowed, ``decimal`` separator, thousands separators removed) is a
      Unix epoch in ``unit``; when ``unit`` is None it is read from the column's magnitudes:
      the median absolute value < 1e11 means seconds, < 1e14 milliseconds, < 1e17
      microseconds, else nanoseconds. Each bound is the point where a time after March 1973 in
      the finer unit would be mistaken for the coarser one (1e11 s is year 5138; now is about
      1.7e9 s = 1.7e12 ms = 1.7e15 us = 1.7e18 ns), so any time from 1973 to 5138 is read
      right in every unit; older ones need ``unit``. A number whose own magnitude says another unit than the
      column's (a seconds value in a milliseconds column, a placeholder 0) is NaT rather than a
      silent date in 1970. When every number lies in 20000-80000 the column is read as Excel
      serial days (1954-2119; read as seconds they would all fall on 1970-01-01); ``unit="s"``
      or ``"excel"`` overrides. Numbers outside the datetime64[ns] range (years 1677-2262) are NaT.
    * text is ISO 8601 (dates, datetimes, ``Z``/``UTC``/``GMT`` or ``+01:00`` offsets); when
      fewer than half of the text values are ISO, the first of :data:`TIME_FORMATS` reading the
      most of them is used. Time-zone names such as ``CET`` are ambiguous and give NaT.
      Numbers and text mixed in one column are each parsed their own way.

    Args:
        raw: the column (text, numbers or datetimes).
        fmt: strptime format, or None.
        unit: one of :data:`TIME_UNITS`, or None to detect.
        decimal: decimal separator of numbers in text.

    Returns:
        (times aligned with ``raw``, one line saying which format/unit was used).

    Raises:
        DataError: day/month order cannot be decided (``03/04/2020`` both ways): set ``time_format``.
    """
    if pd.api.types.is_datetime64_any_dtype(raw):
        out, how = pd.to_datetime(raw, errors="coerce", utc=True), "datetime column"
    elif fmt:
        out, how = pd.to_datetime(raw, format=fmt, errors="coerce", utc=True), f"time_format {fmt!r}"
    else:
        out, how = _parse_mixed(raw, unit, decimal)
    return out.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]"), how


def _parse_mixed(raw: pd.Series, unit: str | None, decimal: str) -> tuple[pd.Series, str]:
    text = raw.astype("string").str.strip() if not pd.api.types.is_numeric_dtype(raw) else raw.astype("string")
    num = to_number(raw, decimal)
    is_num = num.notna().to_numpy()
    ns = np.full(len(raw), np.iinfo(np.int64).min, dtype=np.int64)
    parts = []
    if is_num.any():
        vals = num.to_numpy()[is_num]
        lo, hi = EXCEL_RANGE
        found = unit or ("excel" if ((vals >= lo) & (vals < hi)).all() else str(magnitude_unit(np.median(np.abs(vals)))))
        ns[is_num] = _epoch_to_ns(_normalise_numbers(text, decimal)[is_num], num[is_num], found)
        if unit is None and found != "excel":
            other = magnitude_unit(vals) != found
            ns[np.flatnonzero(is_num)[other]] = np.iinfo(np.int64).min
        name = "Excel serial days" if found == "excel" else f"Unix epoch {UNIT_NAMES[found]}"
        parts.append(f"{name} ({'time_unit' if unit else 'detected from magnitudes'})")
    out = pd.Series(pd.to_datetime(ns, unit="ns", utc=True), index=raw.index)
    is_text = ~is_num & text.notna().to_numpy() & (text != "").fillna(False).to_numpy(dtype=bool)
    if is_text.any():
        t = text[is_text].str.replace(r"\s*(UTC|GMT)$", "Z", regex=True)
        parsed, how = pd.to_datetime(t, format="ISO8601", errors="coerce", utc=True), "ISO dates/datetimes"
        if parsed.notna().mean() < 0.5:
            best = max(TIME_FORMATS, key=lambda f: pd.to_datetime(t, format=f, errors="coerce").notna().sum())
            n = pd.to_datetime(t, format=best, errors="coerce").notna().sum()
            if n > parsed.notna().sum():
                _refuse_ambiguous(t, best, n)
                parsed, how = pd.to_datetime(t, format=best, errors="coerce", utc=True), f"dates {best!r} (detected)"
        out[is_text] = parsed
        if parsed.notna().any():
            parts.append(how)
    return out, " + ".join(parts) or "no times"


def _refuse_ambiguous(t: pd.Series, best: str, n: int) -> None:
    swapped = best.replace("%d", "%X").replace("%m", "%d").replace("%X", "%m")
    if swapped != best and pd.to_datetime(t, format=swapped, errors="coerce").notna().sum() == n:
        raise DataError(f"Dates like {t.iloc[0]!r} can be read day-first or month-first; set time_format in "
                        f"visrec.json ({best!r} or {swapped!r}).")
