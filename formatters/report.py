"""report.html: stats.json of a `clean` run as one self-contained page (no external files; a small inline
script sorts tables and filters sample rejects, and everything reads the same without it).

For whoever must defend the thresholds: per-source totals and reject reasons, each step's own counts,
score histograms with the applied thresholds marked (stats.json `thresholds`), what-if curves (kept pairs
against each threshold, stats.json `whatif`), the pairs nearest each threshold on either side
(stats.json `near_threshold`), a few kept pairs per source (`kept_samples`), overlaps from --audit runs,
and sample rejects per reason with the scores that rejected them; pictures are thumbnails of the pairs'
images (inline JPEG). Everything from the data is HTML-escaped: captions are untrusted web text.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping
from typing import Any

from vlcurate.schemas.stats import READ_STEP, gallery_key

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
td.img{text-align:center}.hist{display:inline-block;margin:0 1.5em 1em 0;vertical-align:top}.muted{color:#777}
.warn{background:#fff3cd;border:2px solid #c98a00;padding:.4em 1em;margin:1em 0}
.cards{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start}td.side{vertical-align:top;text-align:left;width:50%}
figure.card{width:132px;margin:0;font-size:12px;line-height:1.3;overflow-wrap:anywhere}figure.card img{display:block}
.noimg{display:block;width:128px;height:48px;background:#f3f3f3;color:#777;text-align:center;line-height:48px}
"""


_LEFT = ' class="l"'


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]], left: int = 1) -> str:
    """A table whose first `left` columns are text (left-aligned) and the rest numbers."""

    def cells(tag: str, values: Iterable[Any]) -> str:
        return "".join(f"<{tag}{_LEFT if i < left else ''}>{_e(v)}</{tag}>" for i, v in enumerate(values))

    return (
        f"<table><tr>{cells('th', header)}</tr>"
        + "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
        + "</table>"
    )


def _histogram_svg(
    hist: Mapping[str, Any], width: int = 320, height: int = 90, marks: Iterable[tuple[float, str]] = ()
) -> str:
    """Bars of `hist`, with a red line and label at each (value, label) of `marks` (thresholds)."""
    counts = hist["counts"]
    top = max(counts) or 1
    bar = width / len(counts)
    bars = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - c / top * height:.1f}" width="{max(bar - 1, 1):.1f}" '
        f'height="{c / top * height:.1f}" fill="#4a7fb5"><title>{_e(_bin_label(hist, i))}: {c}</title></rect>'
        for i, c in enumerate(counts)
    )
    return _chart(bars, hist["low"], hist["high"], width, height, marks, f"{max(counts):,}")


def _chart(
    body: str,
    low: float,
    high: float,
    width: int,
    height: int,
    marks: Iterable[tuple[float, str]],
    top: str = "",
) -> str:
    """An SVG of `body` with the x range's ends labelled below, `top` (the y maximum) at the top left, and
    a red line with its label at each threshold of `marks`."""
    span = high - low
    lines = "".join(
        f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{height}" stroke="#c0392b" stroke-width="1.5">'
        f"<title>threshold {_e(label)}: {_e(value)}</title></line>"
        f'<text x="{x + 2:.1f}" y="10" font-size="10" fill="#c0392b">{_e(label)} {_e(value)}</text>'
        for value, label in marks
        if value is not None and span > 0
        for x in [min(max((value - low) / span, 0.0), 1.0) * width]
    )
    y_label = f'<text x="2" y="22" font-size="10">{_e(top)}</text>' if top else ""
    return (
        f'<svg width="{width}" height="{height + 14}" role="img">{body}{lines}{y_label}'
        f'<text x="0" y="{height + 12}" font-size="10">{_e(low)}</text>'
        f'<text x="{width}" y="{height + 12}" font-size="10" text-anchor="end">{_e(high)}</text></svg>'
    )


# Which score each recorded threshold applies to (stats.json "thresholds" is keyed by step).
_THRESHOLD_SCORES = {"clip_filter": "clip"}


def _applied_rows(applied: Mapping[str, Any]) -> list[list[Any]]:
    rows = []
    for step, by_source in applied.items():
        for source, groups in by_source.items():
            for group, entry in groups.items():
                how = entry["from"]
                if how == "keep_fraction" and not entry["scored"]:
                    how = f"keep_fraction {entry['keep_fraction']:g}"
                elif how == "keep_fraction":
                    how = f"keep_fraction {entry['keep_fraction']:g}: quantile {entry['quantile']:g} of {entry['scored']:,}"
                value = "no pair scored" if entry["value"] is None else f"{entry['value']:.4g}"
                rows.append([source, step, group, value, how])
    return rows


def _marks(applied: Mapping[str, Any], score: str, source: str) -> list[tuple[float, str]]:
    steps = [step for step, name in _THRESHOLD_SCORES.items() if name == score]
    return [
        (round(entry["value"], 4), group)
        for step in steps
        for group, entry in applied.get(step, {}).get(source, {}).items()
        if entry["value"] is not None
    ]


def _param_marks(
    info: Mapping[str, Any], source: str, step: str, param: str, label: str
) -> list[tuple[float, str]]:
    value = info.get("step_params", {}).get(source, {}).get(step, {}).get(param)
    usable = isinstance(value, (int, float)) and not isinstance(value, bool)
    return [(value, label)] if usable else []


def _score_marks(
    stats: Mapping[str, Any], info: Mapping[str, Any], score: str, source: str
) -> list[tuple[float, str]]:
    """Every threshold applied to `score` for `source`: clip_filter's recorded ones, and each parameter
    with a what-if curve on that score (length's min_words and max_words on n_words, ...)."""
    marks = _marks(stats.get("thresholds", {}), score, source)
    for name, entry in stats.get("whatif", {}).items():
        step, _, param = name.partition(".")
        if entry["score"] == score and step not in _THRESHOLD_SCORES:
            marks += _param_marks(info, source, step, param, param)
    return marks


def _languages_section(languages: Mapping[str, Any]) -> list[str]:
    """Kept and rejected pairs per source and caption language (stats.json `languages`)."""
    rows = []
    for source, by_lang in languages.items():
        for lang, counts in by_lang.items():
            total = counts["kept"] + counts["rejected"]
            share = f"{100 * counts['kept'] / total:.1f}" if total else "n/a"
            rows.append([source, lang, counts["kept"], counts["rejected"], share])
    if not rows:
        return []
    return [
        "<h2>Languages</h2><p class='muted'>Per source and caption language as the language step found it "
        "(<i>und</i>: pairs rejected before it, or runs without it).</p>",
        _table(["source", "language", "kept", "rejected", "kept %"], rows, left=2),
    ]


def _run_section(info: Mapping[str, Any]) -> list[str]:
    """What the run used: versions, commit, models. Times, worker count and the config as run are in
    info.json, not here, so that the page is the same for any number of workers and any rerun."""
    rows = [[key, value] for key, value in sorted(info.get("versions", {}).items())]
    rows.append(["git commit", info.get("git_commit")])
    if info.get("scores_from"):
        rows.append(["CLIP scores from", info["scores_from"]])
    for spec, model in sorted((info.get("models") or {}).items()):
        rows.append([f"model {spec}", model])
    return [
        "<h2>Run</h2><p class='muted'>The config as run, start and finish times: info.json beside this "
        "page.</p>",
        _table(["", "value"], rows, left=2),
    ]


# With JavaScript on: a click on a column header sorts its table (numbers as numbers), and the box above
# the sample rejects filters their rows. Off, every table reads the same.
_FILTER_BOX = (
    "<p><input id='rowfilter' size='50' placeholder='filter the rows below: uid, caption, score'></p>"
)
_SCRIPT = """
document.querySelectorAll('table').forEach(function (table) {
  var header = table.rows[0];
  if (!header) return;
  Array.prototype.forEach.call(header.cells, function (cell, column) {
    cell.style.cursor = 'pointer';
    cell.title = 'sort';
    cell.addEventListener('click', function () {
      var up = cell.dataset.up !== '1';
      cell.dataset.up = up ? '1' : '0';
      var rows = Array.prototype.slice.call(table.rows, 1);
      rows.sort(function (a, b) {
        var x = a.cells[column] ? a.cells[column].textContent : '';
        var y = b.cells[column] ? b.cells[column].textContent : '';
        var nx = parseFloat(x.replace(/,/g, '')), ny = parseFloat(y.replace(/,/g, ''));
        var order = !isNaN(nx) && !isNaN(ny) ? nx - ny : x.localeCompare(y);
        return up ? order : -order;
      });
      rows.forEach(function (row) { row.parentNode.appendChild(row); });
    });
  });
});
var box = document.getElementById('rowfilter');
if (box) {
  box.addEventListener('input', function () {
    var wanted = box.value.toLowerCase();
    document.querySelectorAll('table.samples tr').forEach(function (row) {
      if (row.querySelector('th')) return;  // the header row stays
      row.style.display = row.textContent.toLowerCase().indexOf(wanted) >= 0 ? '' : 'none';
    });
  });
}
"""


def _whatif_svg(
    grid: list[float],
    languages: Mapping[str, Any],
    marks: list[tuple[float, str]],
    width: int = 320,
    height: int = 110,
) -> str:
    """Kept pairs against the threshold: solid the known count summed over languages, dashed with the
    undetermined ones added, thin grey one line per language when there are several."""
    known = [sum(lang["kept"][k] for lang in languages.values()) for k in range(len(grid))]
    upper = [known[k] + sum(lang["undetermined"][k] for lang in languages.values()) for k in range(len(grid))]
    top = max(upper, default=0) or 1
    span = (grid[-1] - grid[0]) or 1

    def path(values: list[int], style: str) -> str:
        points = " ".join(
            f"{(x - grid[0]) / span * width:.1f},{height - v / top * height:.1f}"
            for x, v in zip(grid, values)
        )
        return f'<polyline points="{points}" fill="none" {style}/>'

    lines = []
    if len(languages) > 1:
        lines += [path(lang["kept"], 'stroke="#bbb" stroke-width="1"') for lang in languages.values()]
    if upper != known:
        lines.append(path(upper, 'stroke="#4a7fb5" stroke-width="1.5" stroke-dasharray="4 3"'))
    lines.append(path(known, 'stroke="#4a7fb5" stroke-width="2"'))
    return _chart("".join(lines), grid[0], grid[-1], width, height, marks, f"{top:,} pairs")


def _bin_label(hist: Mapping[str, Any], i: int) -> str:
    step = (hist["high"] - hist["low"]) / hist["bins"]
    return f"[{hist['low'] + i * step:.3g}, {hist['low'] + (i + 1) * step:.3g})"


def _sources_table(sources: Mapping[str, Any]) -> str:
    """One column per source, one row per count and reject reason (reasons outnumber sources)."""
    reasons = sorted({r for s in sources.values() for r in s["rejected_by_reason"]})
    rows = [
        ["read", *(s["read"] for s in sources.values())],
        ["kept", *(s["kept"] for s in sources.values())],
        ["kept %", *(f"{100 * s['kept'] / s['read']:.1f}" if s["read"] else "-" for s in sources.values())],
    ]
    rows += [
        [f"rejected: {r}", *(s["rejected_by_reason"].get(r, 0) for s in sources.values())] for r in reasons
    ]
    return _table(["", *sources], rows)


def _steps_table(stats: Mapping[str, Any], info: Mapping[str, Any]) -> str:
    """Steps in the order they ran, the readers (READ_STEP) first."""
    order = {name: i for i, name in enumerate([READ_STEP, *info.get("steps", [])])}
    steps = sorted(stats["steps"].items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
    rows = [
        [
            name,
            s["seen"],
            sum(s["dropped"].values()),
            s["changed"],
            ", ".join(f"{r} {n:,}" for r, n in s["dropped"].items()),
        ]
        for name, s in steps
    ]
    return _table(["step", "seen", "dropped", "changed", "reasons"], rows)


def _warnings(info: Mapping[str, Any]) -> str:
    """The run's failure and warnings (pipelines/outcome.py), in a box at the top; empty when none."""
    lines = ([f"FAILED: {info['failure']}"] if info.get("failure") else []) + list(info.get("warnings", []))
    if not lines:
        return ""
    return (
        "<div class='warn'><b>WARNING</b><ul>" + "".join(f"<li>{_e(x)}</li>" for x in lines) + "</ul></div>"
    )


UNUSUAL_SHARE = 0.5  # a step that drops more than this share of what reached it is worth a look


def _alerts(stats: Mapping[str, Any]) -> str:
    """Steps that rejected an unusual share of the pairs that reached them (more than UNUSUAL_SHARE, short
    of all of them, which the warnings say): not an error on web data, but the first place to look."""
    lines = []
    for step, entry in stats.get("steps", {}).items():
        dropped = sum(entry["dropped"].values())
        if entry["seen"] and UNUSUAL_SHARE < dropped / entry["seen"] < 1:
            reasons = ", ".join(
                f"{r} {n:,}" for r, n in sorted(entry["dropped"].items(), key=lambda kv: -kv[1])
            )
            lines.append(
                f"{step} rejected {dropped / entry['seen']:.0%} of the {entry['seen']:,} pairs that reached it ({reasons})"
            )
    if not lines:
        return ""
    return (
        "<div class='warn'><b>Look here first</b><ul>"
        + "".join(f"<li>{_e(x)}</li>" for x in lines)
        + "</ul></div>"
    )


def _img(jpeg: bytes | None, missing: str = "<span class='muted'>no image</span>") -> str:
    if not jpeg:
        return missing
    return f"<img alt='' src='data:image/jpeg;base64,{base64.b64encode(jpeg).decode('ascii')}'>"


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:g}"


def _scores_html(sample: Mapping[str, Any], deciding: Iterable[str] = ()) -> str:
    """What rejected a sample, as far as its record tells: whose duplicate it is, then its scores, those
    a threshold of the step that gives its reason compares (`deciding`) first and in bold."""
    scores = sample.get("scores", {})
    first = [name for name in deciding if name in scores]
    parts = [f"<b>{_e(name)} {_e(_number(scores[name]))}</b>" for name in first]
    parts += [f"{_e(name)} {_e(_number(value))}" for name, value in scores.items() if name not in first]
    if sample.get("duplicate_of") is not None:
        parts.insert(0, f"<b>duplicate of {_e(sample['duplicate_of'])}</b>")
    return ", ".join(parts)


def _deciding_scores(stats: Mapping[str, Any]) -> dict[str, list[str]]:
    """reason -> the scores compared with a threshold (stats.json `whatif` and `near_threshold`) by the
    steps that gave that reason (stats.json `steps`)."""
    rules = [(name.partition(".")[0], entry["score"]) for name, entry in stats.get("whatif", {}).items()]
    rules += [
        (e["step"], e["score"])
        for by_source in stats.get("near_threshold", {}).values()
        for e in by_source.values()
    ]
    out: dict[str, list[str]] = {}
    for step, score in rules:
        for reason in stats.get("steps", {}).get(step, {}).get("dropped", {}):
            if score not in out.setdefault(reason, []):
                out[reason].append(score)
    return out


def _samples_table(
    samples: Iterable[Mapping[str, Any]], thumbnails: Mapping[str, bytes], deciding: Iterable[str] = ()
) -> str:
    """uid, caption, the scores that rejected it (the uid it duplicates) and, where the reject still had a
    decodable image, its thumbnail inline."""
    rows = [
        f"<tr><td class='img'>{_img(thumbnails.get(sample['uid']))}</td><td{_LEFT}>{_e(sample['uid'])}</td>"
        f"<td{_LEFT}>{_e(sample['caption_raw'])}</td><td{_LEFT}>{_scores_html(sample, deciding)}</td></tr>"
        for sample in samples
    ]
    return (
        "<table class='samples'><tr><th>image</th><th class='l'>uid</th><th class='l'>caption (raw)</th>"
        "<th class='l'>scores</th></tr>" + "".join(rows) + "</table>"
    )


def _size(pair: Mapping[str, Any]) -> str:
    if pair.get("width") is None or pair.get("height") is None:
        return "size unknown"
    return f"{pair['width']} x {pair['height']}"


def _card(pair: Mapping[str, Any], jpeg: bytes | None, lines: Iterable[str]) -> str:
    """A thumbnail with lines of (escaped) text under it, the pair's caption last."""
    text = "".join(f"{line}<br>" for line in lines)
    return (
        f"<figure class='card'>{_img(jpeg, '<span class=noimg>no image</span>')}<figcaption>{text}"
        f"<span title='{_e(pair['uid'])}'>{_e(pair['caption'])}</span></figcaption></figure>"
    )


def _near_side(name: str, entry: Mapping[str, Any], source: str, side: str, thumbnails) -> str:
    if not entry[side]:
        return "<span class='muted'>no pair</span>"
    cards = []
    for i, pair in enumerate(entry[side]):
        lines = [
            f"<b>{_e(entry['score'])} {_e(_number(pair['value']))}</b> "
            f"<span class='muted'>/ {_e(_number(pair['threshold']))}</span>",
            _e(_size(pair)),
        ]
        if pair.get("reject"):
            lines.append(f"<span class='muted'>rejected: {_e(pair['reject'])}</span>")
        cards.append(_card(pair, thumbnails.get(gallery_key("near", name, source, side, i)), lines))
    return f"<div class='cards'>{''.join(cards)}</div>"


def _near_section(near: Mapping[str, Any], thumbnails: Mapping[str, bytes]) -> list[str]:
    """Per threshold and source, a table of two cells: the pairs just below the threshold | just above."""
    parts = [
        "<h2>Near the thresholds</h2><p class='muted'>Per threshold and source, the pairs closest to it on "
        "either side among the pairs that reached its step (a threshold computed from a keep_fraction is "
        "the one computed; one per caption language where the step has one per language). Each card: "
        "the score / the pair's threshold, the image size (width x height, after EXIF orientation), the "
        "cleaned caption. A pair exactly at its threshold is on the side that passes; 'rejected:' marks a "
        "pair rejected there, by this step or a later one.</p>"
    ]
    for name, by_source in near.items():
        for source, entry in by_source.items():
            passes = ">=" if entry["direction"] == "min" else "<="
            below, above = ("rejected", "kept") if entry["direction"] == "min" else ("kept", "rejected")
            parts.append(
                f"<h3>{_e(name)} <span class='muted'>{_e(source)}: {_e(entry['step'])} keeps a pair if "
                f"{_e(entry['score'])} {_e(passes)} {_e(entry['param'])}</span></h3><table><tr>"
                f"<th class='l'>below the threshold ({below})</th><th class='l'>above ({above})</th></tr><tr>"
                + "".join(
                    f"<td class='side'>{_near_side(name, entry, source, side, thumbnails)}</td>"
                    for side in ("below", "above")
                )
                + "</tr></table>"
            )
    return parts


def _kept_section(kept: Mapping[str, list[Mapping[str, Any]]], thumbnails: Mapping[str, bytes]) -> list[str]:
    parts = [
        "<h2>Kept pairs</h2><p class='muted'>Per source, the kept pairs of lowest uid hash (the same "
        "ones whatever the number of workers), with their size and cleaned caption.</p>"
    ]
    for source, pairs in kept.items():
        cards = [
            _card(pair, thumbnails.get(gallery_key("kept", source, i)), [_e(_size(pair))])
            for i, pair in enumerate(pairs)
        ]
        parts.append(f"<h3>{_e(source)}</h3><div class='cards'>{''.join(cards)}</div>")
    return parts


def render_report(
    stats: Mapping[str, Any], info: Mapping[str, Any], thumbnails: Mapping[str, bytes] | None = None
) -> str:
    """The page for one run's stats.json and info.json contents; `thumbnails` (RunStats.sample_thumbnails:
    JPEG bytes by uid for the sample rejects, by gallery_key for the galleries) puts pictures beside them."""
    totals = stats["totals"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>vlcurate clean report</title>",
        f"<style>{_STYLE}</style></head><body><h1>vlcurate clean report</h1>",
        f"<p>read <b>{totals['read']:,}</b>, kept <b>{totals['kept']:,}</b>, rejected "
        f"<b>{totals['rejected']:,}</b>. Steps: {_e(', '.join(info.get('steps', [])))}.</p>",
        _warnings(info),
        _alerts(stats),
        "<h2>Sources</h2>",
        _sources_table(stats["sources"]),
        *_languages_section(stats.get("languages", {})),
        "<h2>Steps</h2><p class='muted'>seen: pairs that reached the step (all pairs in --audit runs); "
        "dropped: pairs the step itself rejected; changed: captions a cleaner rewrote.</p>",
        _steps_table(stats, info),
    ]
    applied = stats.get("thresholds", {})
    if applied:
        parts += [
            "<h2>Thresholds applied</h2><p class='muted'>Per source and caption language (<i>default</i>: "
            "every language not named): a threshold given in the config, or one computed from the scores "
            "to keep a fraction (the quantile of the scores that reached the step).</p>",
            _table(["source", "step", "language", "threshold", "from"], _applied_rows(applied), left=3),
        ]
    params = info.get("step_params", {})
    if params:
        rows = [[src, step, p] for src, steps in params.items() for step, p in steps.items() if p]
        parts += ["<h2>Step parameters</h2>", _table(["source", "step", "parameters"], rows, left=3)]
    if stats.get("histograms"):
        parts.append("<h2>Score histograms</h2><p class='muted'>Red lines: the thresholds applied.</p>")
        for score, by_source in stats["histograms"].items():
            for source, hist in by_source.items():
                marks = _score_marks(stats, info, score, source)
                parts.append(
                    f"<div class='hist'><b>{_e(score)}</b> <span class='muted'>{_e(source)}, "
                    f"{sum(hist['counts']):,} pairs</span><br>{_histogram_svg(hist, marks=marks)}</div>"
                )
    if stats.get("whatif"):
        parts.append(
            "<h2>What if</h2><p class='muted'>Pairs that would pass every filter (before dedup) were one "
            "threshold elsewhere, everything else as run; red: the threshold applied. Where a dashed line "
            "lies above the solid one, the pairs between them were rejected by this step and never met a "
            "later one (CLIP): their fate is not known (run with --audit, or see stats.json "
            "<code>whatif</code>).</p>"
        )
        for name, entry in stats["whatif"].items():
            step, _, param = name.partition(".")
            for source, curve in entry["by_source"].items():
                marks = _marks(applied, entry["score"], source) or _param_marks(info, source, step, param, "")
                parts.append(
                    f"<div class='hist'><b>{_e(name)}</b> <span class='muted'>{_e(source)}, kept if "
                    f"{_e(entry['score'])} {'&gt;=' if entry['direction'] == 'min' else '&lt;='} x</span><br>"
                    f"{_whatif_svg(entry['grid'], curve['languages'], marks)}</div>"
                )
    if stats.get("near_threshold"):
        parts += _near_section(stats["near_threshold"], thumbnails or {})
    if stats.get("kept_samples"):
        parts += _kept_section(stats["kept_samples"], thumbnails or {})
    if stats.get("overlaps"):
        parts += ["<h2>Overlaps (--audit)</h2>", _table(["reasons", "pairs"], stats["overlaps"].items())]
    if stats.get("samples"):
        parts.append(
            "<h2>Sample rejects</h2><p class='muted'>The same hash-chosen pairs whatever the number of workers; "
            "pictures are thumbnails of the image each reject carried ('no image' where it had none that "
            "decodes); scores: every score the reject had when it was dropped (4 significant digits), in bold "
            "those a threshold of the step that rejected it compares, and the uid a duplicate duplicates.</p>"
        )
        parts.append(_FILTER_BOX)
        deciding = _deciding_scores(stats)
        for reason, samples in stats["samples"].items():
            parts += [
                f"<h3>{_e(reason)}</h3>",
                _samples_table(samples, thumbnails or {}, deciding.get(reason, ())),
            ]
    parts += _run_section(info)
    parts.append(f"<script>{_SCRIPT}</script></body></html>\n")
    return "".join(parts)
