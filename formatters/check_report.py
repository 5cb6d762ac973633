"""The check's report.html: check.json as one self-contained page, with example findings per reason.

Everything from the data (ids, details) is HTML-escaped. Example findings are the first per reason in id
hash order, so every worker count shows the same ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vlcurate.formatters.report import _STYLE, _e, _histogram_svg, _table

EXAMPLES_PER_REASON = 8


def _examples(findings: Sequence[Mapping[str, Any]]) -> str:
    shown: dict[str, list[Mapping[str, Any]]] = {}
    for row in findings:
        rows = shown.setdefault(f"{row['check']}: {row['reason']}", [])
        if len(rows) < EXAMPLES_PER_REASON:
            rows.append(row)
    parts = []
    for title, rows in sorted(shown.items()):
        table = _table(
            ["id", "task", "loss", "swap loss", "detail"],
            ([r["id"], r["task"], _num(r["loss"]), _num(r["swap_loss"]), r["detail"] or ""] for r in rows),
            left=2,
        )
        parts += [f"<h3>{_e(title)}</h3>", table]
    return "".join(parts)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def render_check_report(check: Mapping[str, Any], findings: Sequence[Mapping[str, Any]]) -> str:
    """The page for one check.json and its findings (sorted by reason, then id hash)."""
    verdict = (
        "no structural findings" if check["passed_structural"] else "structural findings: fix before training"
    )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>vlcurate check report</title>",
        f"<style>{_STYLE}</style></head><body><h1>vlcurate check report</h1>",
        f"<p>{_e(check['input_kind'])} output <b>{_e(check['input'])}</b>: <b>{check['samples']:,}</b> records, "
        f"<b>{check['structural_findings']:,}</b> structural findings, <b>{check['model_findings']:,}</b> "
        f"model findings ({_e(verdict)}).</p>",
        f"<p class='muted'>Model: {_e(check.get('model') or 'none')}; scored: {_e(check['model_selection'])}.</p>",
        "<h2>Tasks</h2>",
    ]
    rows = []
    for task, entry in check["tasks"].items():
        model = entry["model"] or {}
        rows.append(
            [
                task,
                entry["samples"],
                entry["tokens"],
                "" if entry["supervised_share"] is None else f"{entry['supervised_share']:.1%}",
                entry["samples_with_findings"],
                model.get("scored", ""),
                _num(model.get("loss_p50")),
                _num(model.get("loss_p99")),
                _num(model.get("image_gain_p50")),
                sum(model.get("findings_by_reason", {}).values()) if model else "",
            ]
        )
    header = [
        "task",
        "records",
        "tokens",
        "supervised",
        "with findings",
        "scored",
        "loss p50",
        "loss p99",
        "image gain p50",
        "model findings",
    ]
    parts.append(_table(header, rows))
    by_reason = {**check["structural_findings_by_reason"], **check["model_findings_by_reason"]}
    if by_reason:
        parts += ["<h2>Findings by reason</h2>", _table(["reason", "findings"], sorted(by_reason.items()))]
    parts.append("<h2>Token lengths</h2>")
    for task, entry in check["tasks"].items():
        hist = entry["token_lengths"]
        if sum(hist["counts"]):
            parts.append(
                f"<div class='hist'><b>{_e(task)}</b> <span class='muted'>{sum(hist['counts']):,} records"
                f"</span><br>{_histogram_svg(hist)}</div>"
            )
    if findings:
        parts += ["<h2>Example findings</h2>", _examples(findings)]
    parts.append("</body></html>\n")
    return "".join(parts)
