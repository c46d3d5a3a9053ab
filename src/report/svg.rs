//! Inline SVG charts: horizontal bars (with the number next to each bar), a small meter, and
//! the history strip. Colours come from the page's CSS classes, so the print stylesheet can
//! adjust them; every number is also written as text, so a chart reads in black and white.
//!
//! Labels and titles are plain text and escaped here; `value` markup is built (and escaped)
//! by the caller, because it carries the `data-metric` attributes.

use std::fmt::Write;

use crate::html::esc;

const WIDTH: f64 = 760.0;
const LABEL_W: f64 = 200.0;
const BAR_W: f64 = 330.0;
const ROW_H: f64 = 22.0;
const BAR_H: f64 = 14.0;
/// Font of every chart, as presentation attributes (they inherit, and work where the page's
/// CSS does not reach the SVG, e.g. some print engines).
const FONT: &str = r#"font-family="system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif" font-size="12""#;

/// Fill colour of a CSS class, written as an attribute too so charts keep their colours
/// wherever the page's CSS is not applied (the CSS, where it is, wins).
fn fill(class: &str) -> &'static str {
    match class {
        "all" => "#4a6fa5",
        "pass" => "#6b9bd1",
        "kept" | "ok" => "#2e8540",
        "out" | "busy" => "#d9a21b",
        "rej" | "bad" | "over" => "#c0392b",
        "used" => "#4a6fa5",
        "track" => "#eef1f5",
        _ => "#5b6475",
    }
}

/// One horizontal bar: stacked segments (value, CSS class) and the number shown after it.
pub struct Bar {
    pub label: String,
    pub segments: Vec<(f64, &'static str)>,
    /// Markup after the bar (already escaped), e.g. a `<tspan data-metric=…>`.
    pub value: String,
    /// Tooltip (plain text).
    pub title: String,
}

/// A dashed line under row `after` (0-based), with a label: the date-filter cutoff.
pub struct Marker {
    pub after: usize,
    pub label: String,
}

/// Horizontal bars on one scale (`max` = a full bar; 0 draws no bars).
pub fn hbars(caption: &str, bars: &[Bar], max: f64, marker: Option<&Marker>) -> String {
    let extra = if marker.is_some() { 14.0 } else { 0.0 };
    let height = bars.len() as f64 * ROW_H + 6.0 + extra;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" aria-label="{}" {FONT}>"#,
        esc(caption)
    );
    for (i, b) in bars.iter().enumerate() {
        let shift = match marker {
            Some(m) if i > m.after => extra,
            _ => 0.0,
        };
        let y = i as f64 * ROW_H + 4.0 + shift;
        let _ = write!(
            s,
            r#"<g><title>{}</title><text class="label" x="{:.0}" y="{:.1}" text-anchor="end">{}</text>"#,
            esc(&b.title),
            LABEL_W - 8.0,
            y + BAR_H - 3.0,
            esc(&truncate(&b.label, 34))
        );
        let _ = write!(
            s,
            r##"<rect class="track" x="{LABEL_W}" y="{y:.1}" width="{BAR_W}" height="{BAR_H}" fill="#eef1f5"/>"##
        );
        let mut x = LABEL_W;
        for (v, class) in &b.segments {
            let w = if max > 0.0 {
                (v.max(0.0) / max).min(1.0) * BAR_W
            } else {
                0.0
            };
            if w > 0.0 {
                let w = w.max(1.0).min(LABEL_W + BAR_W - x);
                let _ = write!(
                    s,
                    r#"<rect class="{class}" x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{BAR_H}" fill="{}"/>"#,
                    fill(class)
                );
                x += w;
            }
        }
        let _ = write!(
            s,
            r#"<text class="value" x="{:.0}" y="{:.1}" font-weight="600">{}</text></g>"#,
            LABEL_W + BAR_W + 8.0,
            y + BAR_H - 3.0,
            b.value
        );
    }
    if let Some(m) = marker {
        let y = (m.after + 1) as f64 * ROW_H + 2.0 + extra / 2.0;
        let _ = write!(
            s,
            r##"<line class="cutoff" x1="8" y1="{y:.1}" x2="{:.0}" y2="{y:.1}" stroke="#c0392b" stroke-width="1.5" stroke-dasharray="6 3"/><text class="cutoff-label" x="{:.0}" y="{:.1}" text-anchor="end" fill="#c0392b" font-size="11">{}</text>"##,
            WIDTH - 4.0,
            WIDTH - 4.0,
            y - 3.0,
            esc(&m.label)
        );
    }
    s.push_str("</svg>");
    s
}

/// A small bar for a table cell: `fraction` of it filled; over 1 is drawn as overuse.
pub fn meter(fraction: Option<f64>) -> String {
    let Some(f) = fraction else {
        return String::new();
    };
    let (class, w) = if f > 1.0 {
        ("over", 100.0)
    } else {
        (
            "used",
            (f.max(0.0) * 100.0).max(if f > 0.0 { 1.0 } else { 0.0 }),
        )
    };
    format!(
        r##"<svg class="meter" viewBox="0 0 100 10" width="60" height="10" preserveAspectRatio="none" aria-hidden="true"><rect class="track" x="0" y="0" width="100" height="10" fill="#eef1f5"/><rect class="{class}" x="0" y="0" width="{w:.1}" height="10" fill="{}"/></svg>"##,
        fill(class)
    )
}

/// One run in the history strip.
pub struct Column {
    pub label: String,
    /// Stacked from the bottom: (value, CSS class).
    pub segments: Vec<(f64, &'static str)>,
    /// CSS class of the status mark under the column.
    pub status: &'static str,
    pub current: bool,
    pub title: String,
}

/// The history strip: one stacked column per run, oldest left; height ∝ users fetched. A
/// column's label may hold two words, drawn on two lines.
pub fn strip(caption: &str, cols: &[Column], max: f64) -> String {
    let (chart_h, col_w, gap, top) = (90.0, 40.0, 18.0, 6.0);
    let width = (cols.len() as f64 * (col_w + gap) + gap).max(200.0);
    let height = top + chart_h + 49.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart strip" viewBox="0 0 {width:.0} {height:.0}" width="{width:.0}" role="img" aria-label="{}" {FONT}>"#,
        esc(caption)
    );
    for (i, c) in cols.iter().enumerate() {
        let x = gap + i as f64 * (col_w + gap);
        let _ = write!(s, "<g><title>{}</title>", esc(&c.title));
        if c.current {
            let _ = write!(
                s,
                r##"<rect class="current" x="{:.1}" y="1" width="{:.1}" height="{:.1}" fill="none" stroke="#1d2433" stroke-dasharray="3 2"/>"##,
                x - 5.0,
                col_w + 10.0,
                height - 2.0
            );
        }
        let mut y = top + chart_h;
        for (v, class) in &c.segments {
            let h = if max > 0.0 {
                (v.max(0.0) / max).min(1.0) * chart_h
            } else {
                0.0
            };
            if h > 0.0 {
                let h = h.max(1.0);
                y -= h;
                let _ = write!(
                    s,
                    r#"<rect class="{class}" x="{x:.1}" y="{y:.1}" width="{col_w}" height="{h:.1}" fill="{}"/>"#,
                    fill(class)
                );
            }
        }
        let _ = write!(
            s,
            r##"<circle class="{}" cx="{cx:.1}" cy="{:.1}" r="5" fill="{}"/>"##,
            c.status,
            top + chart_h + 11.0,
            fill(c.status),
            cx = x + col_w / 2.0,
        );
        // The label's words on separate lines (e.g. date, then time).
        for (k, word) in c.label.split(' ').enumerate() {
            let _ = write!(
                s,
                r##"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="middle" fill="#5b6475" font-size="11">{}</text>"##,
                x + col_w / 2.0,
                top + chart_h + 30.0 + k as f64 * 13.0,
                esc(word)
            );
        }
        s.push_str("</g>");
    }
    s.push_str("</svg>");
    s
}

/// At most `n` characters, with an ellipsis when cut.
fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_bars_stay_in_their_box() {
        let bars = [Bar {
            label: "<script>\"x\"".into(),
            segments: vec![(5.0, "kept"), (10.0, "out")],
            value: "5".into(),
            title: "a&b".into(),
        }];
        let svg = hbars("c", &bars, 10.0, None);
        assert!(svg.contains("&lt;script&gt;&quot;x&quot;"), "{svg}");
        assert!(svg.contains("a&amp;b"));
        assert!(!svg.contains("<script"));
        // The second segment is cut at the end of the track.
        assert!(
            svg.contains(r##"x="365.0" y="4.0" width="165.0" height="14" fill="#d9a21b""##),
            "{svg}"
        );
    }

    #[test]
    fn meter_marks_overuse() {
        assert!(
            meter(Some(1.5))
                .contains(r##"class="over" x="0" y="0" width="100.0" height="10" fill="#c0392b""##)
        );
        assert!(meter(Some(0.5)).contains("width=\"50.0\""));
        assert_eq!(meter(None), "");
    }
}
