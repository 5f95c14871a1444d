"""The monitoring run's HTML report: the decision, drift per column, realised quality, and each
column's distribution in the reference beside the current traffic. One self-contained file."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from monitoring.outcome import KINDS, Outcome, Settings

COLOURS = {"ok": "#1a7f37", "drift": "#9a6700", "degraded": "#cf222e"}
STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#1f2328}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #d0d7de;padding:.3rem .6rem;
text-align:left}th{background:#f6f8fa}.num{text-align:right}svg{margin:.5rem 1rem 1rem 0}
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 1rem}
"""
REF, CUR = "#8c959f", "#0969da"


def _bars(title: str, labels: list[str], ref: np.ndarray, cur: np.ndarray) -> str:
    """Reference and current shares side by side, one pair of bars per bin or value."""
    width, height, pad = 560, 160, 24
    top = max(float(ref.max(initial=0)), float(cur.max(initial=0)), 1e-9)
    step = (width - 2 * pad) / max(len(labels), 1)
    bars = []
    for i, (r, c) in enumerate(zip(ref, cur, strict=True)):
        x = pad + i * step
        for j, (value, colour) in enumerate(((r, REF), (c, CUR))):
            h = (height - 2 * pad) * value / top
            bars.append(
                f'<rect x="{x + j * step / 2:.1f}" y="{height - pad - h:.1f}" '
                f'width="{max(step / 2 - 1, 1):.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{html.escape(labels[i])}: {value:.1%}</title></rect>"
            )
    return (
        f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">'
        f'<text x="{pad}" y="14" font-size="12">{html.escape(title)}</text>{"".join(bars)}'
        f'<text x="{pad}" y="{height - 6}" font-size="10">{html.escape(labels[0] if labels else "")}'
        f'</text><text x="{width - pad}" y="{height - 6}" font-size="10" text-anchor="end">'
        f"{html.escape(labels[-1] if labels else '')}</text></svg>"
    )


def _distribution(name: str, kind: str, reference: pd.Series, current: pd.Series) -> str:
    reference, current = reference.dropna(), current.dropna()
    if reference.empty or current.empty:
        return ""
    if kind == "numerical":
        edges = np.unique(np.quantile(reference, np.linspace(0, 1, 21)))
        edges[0], edges[-1] = min(edges[0], current.min()), max(edges[-1], current.max())
        ref = np.histogram(reference, edges)[0] / len(reference)
        cur = np.histogram(current, edges)[0] / len(current)
        labels = [f"{a:.3g}–{b:.3g}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
        title = f"{name}: share of rides per reference ventile"
    else:
        top = pd.concat([reference, current]).value_counts().index[:20]
        ref = reference.value_counts(normalize=True).reindex(top, fill_value=0).to_numpy()
        cur = current.value_counts(normalize=True).reindex(top, fill_value=0).to_numpy()
        labels = [str(v) for v in top]
        title = f"{name}: share of rides, the 20 most frequent values"
    return _bars(title, labels, ref, cur)


def render(outcome: Outcome, settings: Settings, reference, current) -> str:
    e = html.escape
    colour = COLOURS.get(outcome.decision, "#1f2328")
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Monitoring "
        f"{e(outcome.model_name)} v{e(outcome.version)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{e(outcome.model_name)} v{e(outcome.version)}: "
        f"<span style='color:{colour}'>{e(outcome.decision)}</span></h1>",
        f"<p>{e(outcome.summary(settings))}</p>",
    ]
    if outcome.drift is not None:
        d = outcome.drift
        out += [
            f"<h2>Drift: {sum(c.drifted for c in d.columns)} of {len(d.columns)} columns "
            f"(the data set drifts at a share of {d.drift_share:g})</h2>",
            "<table><tr><th>column</th><th>kind</th><th>method</th><th>score</th>"
            "<th>threshold</th><th>drifted</th><th>reference rows</th><th>current rows</th></tr>",
            *(
                f"<tr><td>{e(c.column)}</td><td>{c.kind}</td><td>{e(c.method)}</td>"
                f"<td class=num>{c.score:.4f}</td><td class=num>{c.threshold:g}</td>"
                f"<td>{'yes' if c.drifted else 'no'}</td><td class=num>{c.reference_rows:,}</td>"
                f"<td class=num>{c.current_rows:,}</td></tr>"
                for c in d.columns
            ),
            "</table>",
            f"<p class=legend><span style='background:{REF}'></span>training reference"
            f"<span style='background:{CUR}'></span>logged traffic</p>",
            *(
                _distribution(name, kind, reference[name], current[name])
                for name, kind in KINDS.items()
                if reference is not None and name in reference and name in current
            ),
        ]
    if outcome.quality is not None:
        q = outcome.quality
        val = f"{outcome.val_rmse:.4f}" if outcome.val_rmse is not None else "unknown"
        out += [
            "<h2>Realised quality</h2><table><tr><th>month</th><th>rides scored</th>"
            "<th>RMSE (min)</th><th>validation RMSE</th><th>allowed increase</th></tr>",
            f"<tr><td>{e(settings.actuals or '')}</td><td class=num>{q.rides:,}</td>"
            f"<td class=num>{q.rmse:.4f}</td><td class=num>{val}</td>"
            f"<td class=num>{settings.max_rmse_increase:.0%}</td></tr></table>",
        ]
    out.append("</body></html>")
    return "\n".join(out)
