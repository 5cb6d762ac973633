from vlcurate.formatters.report import render_report
from vlcurate.schemas.stats import gallery_key

STATS = {
    "totals": {"read": 3, "kept": 1, "rejected": 2},
    "sources": {
        "web": {"read": 3, "kept": 1, "rejected": 2, "rejected_by_reason": {"emoji": 1, "too_small": 1}}
    },
    "steps": {"emoji": {"seen": 3, "dropped": {"emoji": 1}, "changed": 0, "by_source": {}}},
    "histograms": {"clip": {"web": {"low": -0.5, "high": 1.0, "bins": 3, "counts": [0, 2, 1]}}},
    "overlaps": {"emoji+too_small": 1},
    "samples": {"emoji": [{"uid": "web/1", "caption_raw": "<script>alert(1)</script> 🙂"}]},
}


def test_report_shows_the_counts_and_escapes_captions():
    page = render_report(STATS, {"steps": ["emoji"], "step_params": {"web": {"emoji": {"max_emoji": 0}}}})
    assert "read <b>3</b>, kept <b>1</b>, rejected <b>2</b>" in page
    assert "<td>33.3</td>" in page and '<td class="l">rejected: too_small</td><td>1</td>' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; 🙂" in page and "alert(1)</script>" not in page
    assert page.count("<script>") == 1  # the report's own (sorting, filtering), at the end
    assert "emoji+too_small" in page and "{&#x27;max_emoji&#x27;: 0}" in page
    assert page.count("<rect ") == 3
    assert page == render_report(
        STATS, {"steps": ["emoji"], "step_params": {"web": {"emoji": {"max_emoji": 0}}}}
    )


def test_sample_rejects_show_their_thumbnail_or_say_there_is_none():
    stats = {
        **STATS,
        "samples": {"emoji": [{"uid": "web/1", "caption_raw": "a"}, {"uid": "web/2", "caption_raw": "b"}]},
    }
    page = render_report(stats, {"steps": ["emoji"]}, {"web/1": b"\xff\xd8jpeg", "web/9": b"unused"})
    assert page.count("<img ") == 1 and "src='data:image/jpeg;base64,/9hqcGVn'" in page
    assert "<td class='img'><span class='muted'>no image</span></td><td class=\"l\">web/2</td>" in page


def test_sample_rejects_show_the_scores_that_rejected_them():
    samples = {
        "clip_low_score": [
            {"uid": "web/1", "caption_raw": "a", "scores": {"min_side": 180.0, "x<": None, "clip": 0.213}}
        ],
        "duplicate": [{"uid": "web/2", "caption_raw": "b", "scores": {}, "duplicate_of": "web/<123>"}],
    }
    page = render_report({**STATS, "samples": samples}, {"steps": ["emoji"]})
    assert "<th class='l'>scores</th>" in page
    assert '<td class="l">a</td><td class="l">min_side 180, x&lt; n/a, clip 0.213</td>' in page
    assert '<td class="l"><b>duplicate of web/&lt;123&gt;</b></td>' in page
    # The score a threshold of the step that gave the reason compares comes first, in bold.
    steps = {**STATS["steps"], "clip_filter": {"seen": 3, "dropped": {"clip_low_score": 1}, "changed": 0}}
    whatif = {"clip_filter.threshold": {"score": "clip", "direction": "min", "grid": [], "by_source": {}}}
    page = render_report({**STATS, "samples": samples, "steps": steps, "whatif": whatif}, {"steps": []})
    assert '<td class="l">a</td><td class="l"><b>clip 0.213</b>, min_side 180, x&lt; n/a</td>' in page


def _gallery_pair(uid: str, caption: str, **fields) -> dict:
    return {"uid": uid, "caption": caption, "width": 640, "height": 480, **fields}


GALLERIES = {
    "near_threshold": {
        "clip_filter.threshold": {
            "web": {
                "step": "clip_filter",
                "param": "threshold",
                "score": "clip",
                "direction": "min",
                "below": [
                    _gallery_pair(
                        "web/1'><script>x</script>",
                        "<script>alert(1)</script>",
                        value=0.398,
                        threshold=0.4,
                        lang="en",
                        reject="clip_low_score",
                    )
                ],
                "above": [
                    _gallery_pair("web/2", "a <b>cat</b>", value=0.4, threshold=0.4, lang="en", reject=None),
                    _gallery_pair("web/3", "a dog", value=0.41, threshold=0.4, lang="en", reject=None),
                ],
            }
        },
        "aspect_ratio.max_ratio": {
            "web": {
                "step": "aspect_ratio",
                "param": "max_ratio",
                "score": "aspect_ratio",
                "direction": "max",
                "below": [],
                "above": [
                    _gallery_pair("web/4", "wide", value=3.2, threshold=3.0, lang=None, reject="aspect_ratio")
                ],
            }
        },
    },
    "kept_samples": {"web": [_gallery_pair("web/5", "kept <i>one</i>", scores={"clip": 0.7})]},
}


def test_near_threshold_and_kept_galleries_render_escaped_with_their_thumbnails():
    thumbnails = {
        gallery_key("near", "clip_filter.threshold", "web", "above", 1): b"\xff\xd8near",
        gallery_key("kept", "web", 0): b"\xff\xd8kept",
        "web/2": b"\xff\xd8a sample's, not web/2's in the gallery",
    }
    page = render_report({**STATS, **GALLERIES}, {"steps": ["emoji"]}, thumbnails)
    near = page[page.index("<h2>Near the thresholds</h2>") : page.index("<h2>Kept pairs</h2>")]
    kept = page[page.index("<h2>Kept pairs</h2>") : page.index("<h2>Overlaps")]
    assert page.count("<script>") == 1 and "<b>cat</b>" not in page and "<i>one</i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in near and "a &lt;b&gt;cat&lt;/b&gt;" in near
    assert "title='web/1&#x27;&gt;&lt;script&gt;x&lt;/script&gt;'" in near
    clip = near[near.index("<h3>clip_filter.threshold") : near.index("<h3>aspect_ratio")]
    assert "clip_filter keeps a pair if clip &gt;= threshold" in clip
    assert "below the threshold (rejected)" in clip and "above (kept)" in clip
    below, above = clip.split("<td class='side'>")[1:]
    assert "<b>clip 0.398</b>" in below and "rejected: clip_low_score" in below and "640 x 480" in below
    assert below.count("<figure") == 1 and "<img " not in below
    assert above.count("<figure") == 2 and above.count("<img ") == 1
    assert above.index("a &lt;b&gt;cat") < above.index("<img ") < above.index("a dog")
    ratio = near[near.index("<h3>aspect_ratio.max_ratio") :]
    assert "below the threshold (kept)" in ratio and "above (rejected)" in ratio
    assert "<span class='muted'>no pair</span>" in ratio and "rejected: aspect_ratio" in ratio
    assert kept.count("<img ") == 1 and "kept &lt;i&gt;one&lt;/i&gt;" in kept and "640 x 480" in kept
    assert page.lower().replace("&lt;script", "").count("<script") == 1  # only the report's own


def test_applied_thresholds_are_listed_and_marked_on_their_histogram():
    stats = {
        **STATS,
        "thresholds": {
            "clip_filter": {
                "web": {
                    "en": {"value": 0.5, "from": "threshold"},
                    "default": {
                        "value": 0.123456,
                        "from": "keep_fraction",
                        "keep_fraction": 0.3,
                        "quantile": 0.7,
                        "scored": 1234,
                    },
                    "zh": {
                        "value": None,
                        "from": "keep_fraction",
                        "keep_fraction": 0.5,
                        "quantile": 0.5,
                        "scored": 0,
                    },
                }
            }
        },
    }
    page = render_report(stats, {"steps": ["clip_filter"]})
    assert (
        '<tr><td class="l">web</td><td class="l">clip_filter</td><td class="l">default</td><td>0.1235</td>'
        "<td>keep_fraction 0.3: quantile 0.7 of 1,234</td></tr>"
    ) in page
    assert "<td>no pair scored</td>" in page
    # On the [-0.5, 1.0] histogram 320 px wide: 0.5 sits at 2/3 of the width, 0.1235 at 0.4157.
    assert page.count("<line ") == 2
    assert '<line x1="213.3" x2="213.3"' in page and '<line x1="133.0" x2="133.0"' in page
    assert "threshold en: 0.5" in page


def test_whatif_curves_show_the_known_and_the_undetermined_pairs_and_the_threshold():
    grid = [0.0, 100.0, 200.0, 300.0]
    stats = {
        **STATS,
        "whatif": {
            "min_side.min_side": {
                "score": "min_side",
                "direction": "min",
                "grid": grid,
                "by_source": {
                    "web": {
                        "settled": False,
                        "languages": {
                            "en": {"kept": [8, 6, 4, 1], "undetermined": [2, 1, 0, 0]},
                            "zh": {"kept": [2, 2, 1, 0], "undetermined": [0, 0, 0, 0]},
                        },
                    }
                },
            }
        },
    }
    info = {"steps": ["min_side"], "step_params": {"web": {"min_side": {"min_side": 200}}}}
    page = render_report(stats, info)
    assert "<h2>What if</h2>" in page and "kept if min_side &gt;= x" in page
    # Known (solid) 10, 8, 5, 1 and with the undetermined (dashed) 12, 9, 5, 1, on a 320 x 110 chart
    # whose top is 12 pairs; one grey line per language.
    assert (
        '<polyline points="0.0,18.3 106.7,36.7 213.3,64.2 320.0,100.8" fill="none" stroke="#4a7fb5" stroke-width="2"/>'
        in page
    )
    assert page.count('stroke-dasharray="4 3"') == 1 and page.count('stroke="#bbb"') == 2
    assert "12 pairs" in page and '<line x1="213.3" x2="213.3"' in page


def test_languages_run_details_and_every_threshold_on_its_histogram():
    stats = {
        **STATS,
        "languages": {"web": {"en": {"kept": 3, "rejected": 1}, "und": {"kept": 0, "rejected": 2}}},
        "histograms": {"n_words": {"web": {"low": 0.0, "high": 80.0, "bins": 4, "counts": [1, 2, 0, 0]}}},
        "whatif": {
            f"length.{param}": {"score": "n_words", "direction": d, "grid": [0.0, 80.0], "by_source": {}}
            for param, d in (("min_words", "min"), ("max_words", "max"))
        },
    }
    info = {
        "steps": ["length"],
        "step_params": {"web": {"length": {"min_words": 3, "max_words": 60}}},
        "versions": {"vlcurate": "0.1.0"},
        "git_commit": "abc123",
        "run": {"started": "2026-12-07T10:00:00Z", "finished": "2026-12-07T10:01:00Z", "wall_seconds": 60.0},
        "config": {"sources": [{"name": "<web>"}]},
    }
    page = render_report(stats, info)
    assert '<td class="l">web</td><td class="l">en</td><td>3</td><td>1</td><td>75.0</td>' in page
    assert '<td class="l">und</td><td>0</td><td>2</td><td>0.0</td>' in page
    # min_words 3 and max_words 60 drawn on the n_words histogram (0-80 over 320 px).
    assert '<line x1="12.0" x2="12.0"' in page and '<line x1="240.0" x2="240.0"' in page
    assert "threshold min_words: 3" in page and "threshold max_words: 60" in page
    assert '<td class="l">git commit</td><td class="l">abc123</td>' in page
    assert "2026-12-07T10" not in page and "&lt;web&gt;" not in page  # times and config: info.json


def test_a_step_rejecting_an_unusual_share_is_pointed_out():
    steps = {
        "emoji": {"seen": 10, "dropped": {"emoji": 6}, "changed": 0, "by_source": {}},
        "length": {"seen": 4, "dropped": {"too_short": 1, "too_long": 1}, "changed": 0, "by_source": {}},
    }
    page = render_report({**STATS, "steps": steps}, {"steps": ["emoji", "length"]})
    assert (
        "<b>Look here first</b><ul><li>emoji rejected 60% of the 10 pairs that reached it (emoji 6)</li></ul>"
        in page
    )
    assert "Look here first" not in render_report(STATS, {"steps": ["emoji"]})
