"""Turn bench/device.sh's result lines into the markdown comparison table.

    python3 bench/table.py results.txt [more.txt ...]      # one section per file

Lines read (anything else is ignored, so a whole device log can be fed in):
    META key value...                  run-wide facts (entry, shape, device, versions, command...)
    RUN name fw overrides label...     a planned run, in table order; fw is lf or tf; overrides is
                                       comma-joined key=value or "-"
    RESULT name rc=0 wall_s=... train_s=... tokens=... tok_per_s=... peak_MiB=...
                                       from ../shared/bench/measure.sh (key=value), or the same
                                       seven fields positionally
    ESTIMATE name <text>               `tuneforge estimate`'s "predicted peak" line [ ;; its
                                       "gradient checkpointing: on|off ..." line], or n/a
    NOTE name text                     e.g. OOM, or the error line of a failed run
    SKIP name reason                   not run (time budget, filtered out...)

peak_MiB=0 means no nvidia-smi was there (CPU): shown as n/a. Ratios are against the reference
run (META reference NAME; LLaMA-Factory packing+liger): tok/s and peak of each row divided by
the reference's.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field

RESULT_FIELDS = ("rc", "wall_s", "train_s", "tokens", "tok_per_s", "peak_MiB")
_UNITS_MIB = {"gib": 1024.0, "gb": 1e9 / 2**20, "g": 1024.0, "mib": 1.0, "mb": 1e6 / 2**20, "m": 1.0,
              "tib": 1024.0**2, "tb": 1e12 / 2**20}
_NUMBER_UNIT = re.compile(r"(\d[\d,]*(?:\.\d+)?|\.\d+)\s*(TiB|GiB|MiB|TB|GB|MB|G|M)?(?![A-Za-z])", re.IGNORECASE)


@dataclass
class Row:
    name: str
    fw: str = "?"
    overrides: str = ""
    label: str = ""
    result: dict[str, float] | None = None
    estimate_text: str | None = None
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def estimate_mib(self) -> float | None:
        return estimate_info(self.estimate_text)[0]

    def value(self, key: str) -> float | None:
        if not self.result:
            return None
        v = self.result.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        return v

    @property
    def peak(self) -> float | None:
        v = self.value("peak_MiB")
        return v if v else None  # 0: no nvidia-smi (CPU) -> unknown

    @property
    def ok(self) -> bool:
        return self.result is not None and self.value("rc") == 0


@dataclass
class Report:
    meta: dict[str, str] = field(default_factory=dict)
    rows: dict[str, Row] = field(default_factory=dict)

    def row(self, name: str) -> Row:
        if name not in self.rows:
            self.rows[name] = Row(name)
        return self.rows[name]

    def reference(self) -> Row | None:
        name = self.meta.get("reference")
        if name is not None:
            return self.rows.get(name)
        for row in self.rows.values():
            if row.name.startswith("lf") and "pack" in row.name:
                return row
        return None


def estimate_info(text: str | None) -> tuple[float | None, str | None]:
    """(predicted peak in MiB, checkpointing "on"/"off" or None) from `tuneforge estimate` output lines.

    The driver hands over the "predicted peak" line and, after " ;; ", the "gradient checkpointing:"
    line. The peak line may hold one value or one per column (checkpointing off, then on, as the
    estimate's table prints them); the checkpointing line says which one the run will use."""
    if not text:
        return None, None
    peak_part, _, ckpt_part = text.partition(";;")
    ckpt = re.search(r"gradient checkpointing:\W*(on|off)\b", text, re.IGNORECASE)
    use = ckpt.group(1).lower() if ckpt else None
    at = peak_part.lower().find("predicted peak")
    if at >= 0:
        values = _mib_values(peak_part[at + len("predicted peak"):])
        if values:
            if use is not None and len(values) >= 2:
                return values[1 if use == "on" else 0], use
            return values[0], use
    # no peak row: the checkpointing line's own "(predicted X GiB" if any, else any number on the line
    reason = re.search(r"predicted\s+(.*)", ckpt_part, re.IGNORECASE)
    values = _mib_values(reason.group(1)) if reason else [] if at >= 0 else _mib_values(peak_part)
    return (values[0] if values else None), use


def parse_estimate(text: str | None) -> float | None:
    """MiB from a `tuneforge estimate` line such as 'predicted peak: 12.3 GiB (...)'; None if absent."""
    return estimate_info(text)[0]


def _mib_values(text: str) -> list[float]:
    values = []
    for m in _NUMBER_UNIT.finditer(text):
        try:
            number = float(m.group(1).replace(",", ""))
        except ValueError:
            continue
        values.append(number * _UNITS_MIB[(m.group(2) or "MiB").lower()])
    return values


def _num(text: str) -> float:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return float("nan")


def parse_result(fields: list[str]) -> dict[str, float]:
    if any("=" in f for f in fields):
        pairs = dict(f.split("=", 1) for f in fields if "=" in f)
        return {k: _num(pairs[k]) for k in RESULT_FIELDS if k in pairs}
    return {k: _num(v) for k, v in zip(RESULT_FIELDS, fields)}


def parse(lines) -> Report:
    report = Report()
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        kind, _, rest = line.partition(" ")
        rest = rest.strip()
        if kind == "META":
            key, _, value = rest.partition(" ")
            report.meta[key] = value.strip()
            continue
        if kind not in ("RUN", "RESULT", "ESTIMATE", "NOTE", "SKIP") or not rest:
            continue
        name, _, tail = rest.partition(" ")
        tail = tail.strip()
        row = report.row(name)
        if kind == "RUN":
            parts = tail.split(" ", 2)
            row.fw = parts[0] if parts else "?"
            row.overrides = "" if len(parts) < 2 or parts[1] == "-" else parts[1].replace(",", " ")
            row.label = parts[2] if len(parts) > 2 else name
        elif kind == "RESULT":
            row.result = parse_result(tail.split())
        elif kind == "ESTIMATE":
            row.estimate_text = None if tail.lower() in ("", "n/a", "na") else tail
        elif kind == "NOTE":
            row.notes.append(tail)
        elif kind == "SKIP":
            row.skipped = tail or "skipped"
    return report


def _int(v: float | None) -> str:
    return "n/a" if v is None else f"{v:,.0f}"


def _sec(v: float | None) -> str:
    return "n/a" if v is None else f"{v:,.1f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}"


def _status(row: Row) -> str:
    if row.skipped:
        return f"not run: {row.skipped}"
    if row.result is None:
        return "no result"
    rc = row.value("rc")
    text = "ok" if rc == 0 else f"rc={_int(rc)}"
    if row.notes:
        text += "; " + "; ".join(row.notes)
    return text.replace("|", "/")


def markdown(report: Report) -> str:
    m = report.meta
    ref = report.reference()
    ref_label = ref.label if ref else "reference"
    title = f"### {m.get('entry', 'bench')}: {m.get('shape', '?')} shape"
    if m.get("device"):
        title += f", {m['device']}"
    if m.get("date"):
        title += f", {m['date']}"
    out = [title, ""]
    for key, text in (("command", "command"), ("shrink", "overrides on every row"), ("extra", "extra overrides"),
                      ("versions_lf", "LLaMA-Factory side"), ("versions_tf", "tuneforge side"),
                      ("rev", "tuneforge revision"), ("yaml", "config")):
        if m.get(key):
            code = key in ("command", "shrink", "extra", "yaml")
            out.append(f"- {text}: `{m[key]}`" if code else f"- {text}: {m[key]}")
    if len(out) > 2:
        out.append("")
    ratio_head = f"÷ {ref_label}" if ref else "÷ ref"
    out.append(f"| run | overrides | tok/s | peak MiB | tok/s {ratio_head} | peak {ratio_head} "
               f"| tuneforge estimate MiB | estimate ÷ peak | train s | wall s | tokens | status |")
    out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    ref_tok = ref.value("tok_per_s") if ref and ref.ok else None
    ref_peak = ref.peak if ref and ref.ok else None
    no_overrides = "(none)" if m.get("shrink") or m.get("extra") else "(yaml as is)"
    for row in report.rows.values():
        tok = row.value("tok_per_s") if row.ok else None
        peak = row.peak if row.ok else None
        est, ckpt = estimate_info(row.estimate_text)
        if ref is not None and row.name == ref.name:
            tok_ratio = "1.00 (ref)" if tok else ""
            peak_ratio = "1.00 (ref)" if peak else ""
        else:
            tok_ratio, peak_ratio = _ratio(tok, ref_tok), _ratio(peak, ref_peak)
        is_tf = row.fw == "tf"
        out.append("| " + " | ".join([
            row.label or row.name,
            f"`{row.overrides}`" if row.overrides else no_overrides,
            _int(tok),
            _int(peak),
            tok_ratio,
            peak_ratio,
            (_int(est) + (f" (ckpt {ckpt})" if ckpt and est is not None else "")) if is_tf else "",
            _ratio(est, peak) if is_tf else "",
            _sec(row.value("train_s")),
            _sec(row.value("wall_s")),
            _int(row.value("tokens")),
            _status(row),
        ]) + " |")
    out.append("")
    out.append("tok/s = tokens (../shared/bench/count_tokens.py, per epoch × epochs) ÷ train_runtime from "
               "all_results.json; peak = highest nvidia-smi memory.used of the whole GPU in 200 ms samples "
               "(CUDA context included; n/a without nvidia-smi); estimate = `tuneforge estimate` with the "
               "same config and overrides.")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    sections = []
    for path in argv:
        with open(path, encoding="utf-8", errors="replace") as fh:
            sections.append(markdown(parse(fh)))
    sys.stdout.write("\n".join(sections))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
