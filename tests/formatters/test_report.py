from vlcurate.formatters.report import render_report

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
    assert "&lt;script&gt;alert(1)&lt;/script&gt; 🙂" in page and "<script>" not in page
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
