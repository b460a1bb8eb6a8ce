"""A self-contained HTML drift report: verdict and why, the score table, and per column an inline SVG bar
chart of the reference vs current distribution (no scripts, fonts, images or stylesheets from elsewhere)."""

from __future__ import annotations

import math
from html import escape

import numpy as np

from shared.domain.drift import PSI_GROUPS, DriftResult, category_counts
from shared.domain.profile import ColumnProfile, Profile

REF_COLOUR = "#4c78a8"
CUR_COLOUR = "#f58518"
MAX_LEVELS = 14


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}"


def numeric_groups(ref: ColumnProfile, cur: ColumnProfile) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The fine bins grouped into about 10 reference-quantile groups: labels, reference and current counts."""
    rc = np.asarray(ref.bin_counts, dtype=float)
    cc = np.asarray(cur.bin_counts, dtype=float)
    before = (np.cumsum(rc) - rc) / max(rc.sum(), 1.0)
    groups = np.clip(np.floor(before * PSI_GROUPS).astype(int), 0, PSI_GROUPS - 1)
    p = np.bincount(groups, weights=rc, minlength=PSI_GROUPS)
    q = np.bincount(groups, weights=cc, minlength=PSI_GROUPS)
    edges = [-math.inf, *ref.edges, math.inf]
    labels, ps, qs = [], [], []
    for g in range(PSI_GROUPS):
        members = np.flatnonzero(groups == g)
        if not members.size or (p[g] == 0 and q[g] == 0):
            continue
        lo, hi = edges[members[0]], edges[members[-1] + 1]
        labels.append(f"< {_fmt(hi)}" if lo == -math.inf else f">= {_fmt(lo)}" if hi == math.inf
                      else f"{_fmt(lo)} – {_fmt(hi)}")
        ps.append(p[g])
        qs.append(q[g])
    return labels, np.asarray(ps), np.asarray(qs)


def _distribution(ref: ColumnProfile, cur: ColumnProfile) -> tuple[list[str], np.ndarray, np.ndarray]:
    if ref.kind == "numeric":
        return numeric_groups(ref, cur)
    levels, p, q = category_counts(ref, cur)
    if len(levels) > MAX_LEVELS:  # keep the largest levels, lump the rest
        order = np.argsort(-(p / max(p.sum(), 1) + q / max(q.sum(), 1)), kind="stable")
        keep, rest = order[: MAX_LEVELS - 1], order[MAX_LEVELS - 1:]
        levels = [levels[i] for i in keep] + [f"({len(rest)} others)"]
        p = np.append(p[keep], p[rest].sum())
        q = np.append(q[keep], q[rest].sum())
    return levels, p, q


def svg_bars(labels: list[str], p: np.ndarray, q: np.ndarray, width: int = 460) -> str:
    """Horizontal paired bars: reference share (blue) over current share (orange) for each label."""
    ps = p / p.sum() if p.sum() else p
    qs = q / q.sum() if q.sum() else q
    top = max(float(np.max(ps, initial=0)), float(np.max(qs, initial=0)), 1e-9)
    label_w, row_h, bar_w = 130, 22, width - 130 - 60
    height = row_h * len(labels) + 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">']
    for i, label in enumerate(labels):
        y = 4 + i * row_h
        a, b = float(ps[i]), float(qs[i])
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{escape(label[:22])}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 1}" width="{a / top * bar_w:.1f}" height="9" '
                     f'fill="{REF_COLOUR}"><title>reference {a:.2%}</title></rect>')
        parts.append(f'<rect x="{label_w}" y="{y + 10}" width="{b / top * bar_w:.1f}" height="9" '
                     f'fill="{CUR_COLOUR}"><title>current {b:.2%}</title></rect>')
        parts.append(f'<text x="{label_w + max(a, b) / top * bar_w + 4:.1f}" y="{y + 14}" fill="#555">'
                     f'{a:.1%} / {b:.1%}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _why(result: DriftResult) -> str:
    if result.not_enough_data:
        return "No verdict: " + result.verdict
    if result.drifted:
        return "Drifted because " + "; ".join(result.reasons) + "."
    return "Not drifted: " + result.verdict + "."


def render_html(result: DriftResult, reference_profile: Profile, current_profile: Profile) -> str:
    verdict = ("NOT ENOUGH DATA" if result.not_enough_data else "DRIFTED" if result.drifted else "NO DRIFT")
    colour = "#777" if result.not_enough_data else "#c0392b" if result.drifted else "#27ae60"
    rows = []
    entries = list(result.columns.items())
    if result.target:
        entries.append((reference_profile.target.name + " (label)", result.target))
    for name, e in entries:
        mark = "drifted" if e["drifted"] else ""
        rows.append(f'<tr class="{mark}"><td>{escape(name)}</td><td>{escape(e["metric"])}</td>'
                    f'<td>{_fmt(e["score"])}</td><td>{_fmt(e["threshold"])}</td><td>{_fmt(e["psi"])}</td>'
                    f'<td>{"yes" if e["drifted"] else "no"}</td></tr>')
    charts = []
    pairs = [(n, reference_profile.columns[n], current_profile.columns.get(n)) for n in reference_profile.columns]
    if reference_profile.target is not None and current_profile.target is not None:
        pairs.append((reference_profile.target.name + " (label)", reference_profile.target, current_profile.target))
    for name, ref, cur in pairs:
        if cur is None:
            continue
        key = name.removesuffix(" (label)")
        entry = result.target if name.endswith(" (label)") else result.columns.get(key)
        labels, p, q = _distribution(ref, cur)
        score = f'{entry["metric"]} {_fmt(entry["score"])} (threshold {_fmt(entry["threshold"])}), ' \
                f'PSI {_fmt(entry["psi"])}' if entry else ""
        missing = f"missing {ref.missing_share:.1%} → {cur.missing_share:.1%}"
        flag = ' <b class="bad">drifted</b>' if entry and entry["drifted"] else ""
        charts.append(f'<div class="chart"><h3>{escape(name)}{flag}</h3><p>{escape(score)}; {missing}</p>'
                      f'{svg_bars(labels, p, q) if labels else "<p>no values</p>"}</div>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Drift report: {verdict}</title>
<style>
body{{font-family:sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}} tr.drifted td{{background:#fde2e0}}
.verdict{{font-size:1.4em;font-weight:bold;color:{colour}}} .bad{{color:#c0392b}}
.charts{{display:flex;flex-wrap:wrap;gap:1em}} .chart{{border:1px solid #eee;padding:.5em}}
.chart h3{{margin:.2em 0}} .chart p{{margin:.2em 0;font-size:.85em;color:#555}}
.key span{{display:inline-block;width:1em;height:.8em;margin:0 .3em 0 1em}}
</style></head><body>
<h1>Drift report</h1>
<p class="verdict">{verdict}</p>
<p>{escape(_why(result))}</p>
<p>Rows: reference {result.rows.get("reference", 0):,}, current {result.rows.get("current", 0):,}.
Drift share {result.drift_share:.0%} ({len(result.drifted_columns)} of {len(result.columns)} columns).</p>
<h2>Scores</h2>
<table><thead><tr><th>column</th><th>metric</th><th>score</th><th>threshold</th><th>PSI</th><th>drifted</th>
</tr></thead><tbody>
{"".join(rows)}
</tbody></table>
<h2>Distributions</h2>
<p class="key"><span style="background:{REF_COLOUR}"></span>reference<span style="background:{CUR_COLOUR}">
</span>current (share of rows; numeric columns in reference-decile groups)</p>
<div class="charts">
{"".join(charts)}
</div></body></html>
"""
