//! A one-file SVG picture of a run, so a reader can see at a glance whether
//! operations kept succeeding during faults, how ack latency behaved and
//! whether export lag recovered after the heal — without a plotting
//! dependency or a browser-side script.
//!
//! Layout: three stacked panels (operations per second, ack latency, export
//! lag) sharing one time axis in seconds since the run started. Fault windows
//! are shaded across all three panels; the final heal and the end of the load
//! are dashed vertical lines.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::history::{Fault, History, Op, Outcome, Sample};

const WIDTH: f64 = 1200.0;
const HEIGHT: f64 = 900.0;
/// Room for y tick labels and the y axis title.
const LEFT: f64 = 80.0;
/// Room for the legends.
const RIGHT: f64 = 160.0;
const TOP: f64 = 60.0;
const PANEL_H: f64 = 230.0;
const GAP: f64 = 45.0;
const PLOT_RIGHT: f64 = WIDTH - RIGHT;
const PLOT_W: f64 = PLOT_RIGHT - LEFT;
/// Above this many latency dots the SVG gets slow to render; stride instead.
const MAX_DOTS: usize = 20_000;
/// Bounds the bucket vector if a timestamp is absurd.
const MAX_BUCKETS: usize = 100_000;

const OK_COLOUR: &str = "#2ca02c";
const FAIL_COLOUR: &str = "#d62728";
const UNKNOWN_COLOUR: &str = "#ff7f0e";
const SINK_COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];
const GRID: &str = r##"stroke="#e4e4e4" stroke-width="1""##;
const TICK_LABEL: &str = r##"font-size="11" text-anchor="end" fill="#333""##;
const MARKER: &str = r##"stroke="#333" stroke-width="1.2" stroke-dasharray="6,4""##;

/// Renders `h` as a self-contained SVG document (about 1200x900 px) headed
/// by `title`, which is XML-escaped. Times are shown in seconds since the
/// run started. Never panics: an empty history yields empty axes, and
/// non-finite times or latencies are left out.
pub fn svg(h: &History, title: &str) -> String {
    let x = TimeAxis::for_history(h);
    let mut c = Canvas::new(title);
    draw_faults(&mut c, &x, h);
    draw_ops_panel(&mut c, &x, &h.ops);
    draw_latency_panel(&mut c, &x, &h.ops);
    draw_lag_panel(&mut c, &x, &h.samples);
    draw_fault_legend(&mut c, &h.faults);
    draw_x_labels(&mut c, &x);
    draw_marker(&mut c, &x, h.load_end_ms, "load stops", "end");
    draw_marker(&mut c, &x, h.healed_ms, "healed", "start");
    c.finish()
}

/// The fill colour of a fault window, by fault kind.
fn fault_colour(kind: &str) -> &'static str {
    match kind {
        "partition" => "#1f77b4",
        "kill" => "#9467bd",
        "pause" => "#8c564b",
        "loss" => "#17becf",
        "bandwidth" => "#bcbd22",
        "latency" => "#e377c2",
        "sink" => "#7f7f7f",
        "membership" => "#393b79",
        _ => "#c49c94",
    }
}

/// The SVG text under construction. Every method writes one complete element,
/// so the document stays well-formed whatever order they are called in.
struct Canvas {
    out: String,
}

impl Canvas {
    fn new(title: &str) -> Canvas {
        let mut c = Canvas {
            out: String::with_capacity(64 * 1024),
        };
        let _ = writeln!(
            c.out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">"#
        );
        c.out
            .push_str("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<defs>\n");
        for p in PANELS {
            let _ = writeln!(
                c.out,
                r#"<clipPath id="{}"><rect x="{LEFT}" y="{:.1}" width="{PLOT_W}" height="{PANEL_H}"/></clipPath>"#,
                p.clip_id(),
                p.top()
            );
        }
        c.out.push_str("</defs>\n");
        let style = r#"font-size="18" font-weight="bold" text-anchor="middle""#;
        c.text((WIDTH / 2.0, 30.0), style, title);
        c
    }

    fn line(&mut self, a: (f64, f64), b: (f64, f64), style: &str) {
        let _ = writeln!(
            self.out,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" {style}/>"#,
            a.0, a.1, b.0, b.1
        );
    }

    /// `body` is escaped; `style` is trusted attribute text.
    fn text(&mut self, at: (f64, f64), style: &str, body: &str) {
        let _ = writeln!(
            self.out,
            r#"<text x="{:.1}" y="{:.1}" {style}>{}</text>"#,
            at.0,
            at.1,
            escape(body)
        );
    }

    fn polyline(&mut self, pts: &[(f64, f64)], colour: &str, p: Panel) {
        if pts.is_empty() {
            return;
        }
        let mut points = String::with_capacity(pts.len() * 12);
        for (x, y) in pts {
            let _ = write!(points, "{x:.1},{y:.1} ");
        }
        let _ = writeln!(
            self.out,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="1.5" stroke-linejoin="round" clip-path="url(#{})"/>"#,
            points.trim_end(),
            p.clip_id()
        );
    }

    fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

/// Escapes XML metacharacters and drops control characters XML 1.0 forbids.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

/// One of the three stacked panels, by position from the top.
#[derive(Clone, Copy)]
struct Panel(usize);

const PANELS: [Panel; 3] = [Panel(0), Panel(1), Panel(2)];

impl Panel {
    fn top(self) -> f64 {
        TOP + self.0 as f64 * (PANEL_H + GAP)
    }

    fn bottom(self) -> f64 {
        self.top() + PANEL_H
    }

    fn clip_id(self) -> String {
        format!("jl-panel-{}", self.0)
    }
}

/// The shared x axis: `0..=max_s` seconds, `max_s > 0` always.
struct TimeAxis {
    max_s: f64,
    step_s: f64,
}

impl TimeAxis {
    /// Spans every finite time the history mentions.
    fn for_history(h: &History) -> TimeAxis {
        let ops = h.ops.iter().flat_map(|o| [o.invoke_ms, o.complete_ms]);
        let faults = h
            .faults
            .iter()
            .flat_map(|f| [Some(f.start_ms), f.end_ms])
            .flatten();
        let samples = h.samples.iter().map(|s| s.t_ms);
        let marks = [h.healed_ms, h.load_end_ms];
        let end_ms = finite_max(ops.chain(faults).chain(samples).chain(marks));
        let (max_s, step_s) = linear_axis(end_ms / 1000.0, 10.0);
        TimeAxis { max_s, step_s }
    }

    /// Pixel x of a time in ms, clamped to the plot area; non-finite maps to 0 s.
    fn px(&self, ms: f64) -> f64 {
        let s = if ms.is_finite() { ms / 1000.0 } else { 0.0 };
        LEFT + s.clamp(0.0, self.max_s) / self.max_s * PLOT_W
    }
}

/// The largest finite value, or 0 if there is none.
fn finite_max(values: impl Iterator<Item = f64>) -> f64 {
    values.filter(|v| v.is_finite()).fold(0.0, f64::max)
}

/// A step of 1, 2 or 5 times a power of ten, at least `raw`; 1 for
/// degenerate input.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let m = match raw / magnitude {
        n if n <= 1.0 => 1.0,
        n if n <= 2.0 => 2.0,
        n if n <= 5.0 => 5.0,
        _ => 10.0,
    };
    m * magnitude
}

/// A linear axis from 0 covering `max` with about `ticks` ticks: returns
/// `(top, step)` with `top` a multiple of `step` and `top >= step > 0`.
fn linear_axis(max: f64, ticks: f64) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let step = nice_step(max / ticks);
    let top = (max / step).ceil() * step;
    (top.max(step), step)
}

/// Tick values `0, step, ..., top` (at most 1001 of them).
fn ticks(top: f64, step: f64) -> impl Iterator<Item = f64> {
    let n = if step > 0.0 && top.is_finite() {
        ((top / step).round() as usize).min(1000)
    } else {
        0
    };
    (0..=n).map(move |k| k as f64 * step)
}

/// A tick label with just enough decimals for `step`.
fn fmt_tick(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        ((-step.log10()).ceil() as usize).min(6)
    };
    format!("{v:.decimals$}")
}

fn y_linear(p: Panel, v: f64, top: f64) -> f64 {
    p.bottom() - (v / top).clamp(0.0, 1.0) * PANEL_H
}

/// Log10 scale from 1 ms (bottom) to `10^decades` ms (top); values below
/// 1 ms sit on the bottom edge.
fn y_log(p: Panel, v: f64, decades: u32) -> f64 {
    let d = f64::from(decades.max(1));
    p.bottom() - v.max(1.0).log10().clamp(0.0, d) / d * PANEL_H
}

/// Title, frame, vertical grid at the shared time ticks, and y axis title.
fn draw_frame(c: &mut Canvas, x: &TimeAxis, p: Panel, title: &str, y_title: &str) {
    c.text(
        (LEFT, p.top() - 10.0),
        r#"font-size="13" font-weight="bold""#,
        title,
    );
    for t in ticks(x.max_s, x.step_s) {
        let px = x.px(t * 1000.0);
        c.line((px, p.top()), (px, p.bottom()), GRID);
    }
    let _ = writeln!(
        c.out,
        r##"<rect x="{LEFT}" y="{:.1}" width="{PLOT_W}" height="{PANEL_H}" fill="none" stroke="#888"/>"##,
        p.top()
    );
    let (lx, ly) = (20.0, p.top() + PANEL_H / 2.0);
    let style =
        format!(r#"font-size="12" text-anchor="middle" transform="rotate(-90 {lx:.1} {ly:.1})""#);
    c.text((lx, ly), &style, y_title);
}

fn draw_linear_y(c: &mut Canvas, p: Panel, top: f64, step: f64) {
    for v in ticks(top, step) {
        let y = y_linear(p, v, top);
        c.line((LEFT, y), (PLOT_RIGHT, y), GRID);
        c.text((LEFT - 6.0, y + 4.0), TICK_LABEL, &fmt_tick(v, step));
    }
}

fn draw_log_y(c: &mut Canvas, p: Panel, decades: u32) {
    for k in 0..=decades {
        let y = y_log(p, 10f64.powi(k as i32), decades);
        c.line((LEFT, y), (PLOT_RIGHT, y), GRID);
        c.text((LEFT - 6.0, y + 4.0), TICK_LABEL, &decade_label(k));
    }
}

fn decade_label(k: u32) -> String {
    if k <= 6 {
        10u64.pow(k).to_string()
    } else {
        format!("1e{k}")
    }
}

/// Tick labels and title of the shared time axis, under the bottom panel.
fn draw_x_labels(c: &mut Canvas, x: &TimeAxis) {
    let y = PANELS[2].bottom() + 16.0;
    let style = r##"font-size="11" text-anchor="middle" fill="#333""##;
    for t in ticks(x.max_s, x.step_s) {
        c.text((x.px(t * 1000.0), y), style, &fmt_tick(t, x.step_s));
    }
    let title_at = (LEFT + PLOT_W / 2.0, y + 22.0);
    c.text(
        title_at,
        r#"font-size="12" text-anchor="middle""#,
        "time since start (s)",
    );
}

/// How legend entries are drawn: a line for series, a block for areas.
#[derive(Clone, Copy, PartialEq)]
enum Swatch {
    Line,
    Block,
}

/// A legend in the right margin beside `p`; entries that would not fit in
/// the panel's height are dropped.
fn draw_legend(
    c: &mut Canvas,
    p: Panel,
    heading: &str,
    entries: &[(&str, String)],
    swatch: Swatch,
) {
    let x0 = PLOT_RIGHT + 12.0;
    c.text(
        (x0, p.top() + 10.0),
        r#"font-size="11" font-weight="bold""#,
        heading,
    );
    for (i, (colour, label)) in entries.iter().enumerate() {
        let y = p.top() + 28.0 + i as f64 * 16.0;
        if y > p.bottom() {
            break;
        }
        if swatch == Swatch::Line {
            let style = format!(r#"stroke="{colour}" stroke-width="2.5""#);
            c.line((x0, y - 4.0), (x0 + 20.0, y - 4.0), &style);
        } else {
            let _ = writeln!(
                c.out,
                r#"<rect x="{x0:.1}" y="{:.1}" width="20" height="10" fill="{colour}" fill-opacity="0.35"/>"#,
                y - 9.0
            );
        }
        c.text((x0 + 26.0, y), r#"font-size="11""#, label);
    }
}

/// Shaded windows across all three panels, behind everything else, with the
/// kind written downwards at the top of the first panel.
fn draw_faults(c: &mut Canvas, x: &TimeAxis, h: &History) {
    let (top, bottom) = (PANELS[0].top(), PANELS[2].bottom());
    for f in &h.faults {
        let (a, b) = (x.px(f.start_ms), x.px(f.end_ms.unwrap_or(h.healed_ms)));
        let (left, width) = (a.min(b), (a - b).abs().max(1.0));
        let colour = fault_colour(&f.kind);
        let _ = writeln!(
            c.out,
            r#"<rect class="fault" x="{left:.1}" y="{top:.1}" width="{width:.1}" height="{:.1}" fill="{colour}" fill-opacity="0.15"><title>{}</title></rect>"#,
            bottom - top,
            escape(&fault_tooltip(f))
        );
        let at = (left + 3.0, top + 4.0);
        let style = format!(
            r#"font-size="9" fill="{colour}" transform="rotate(90 {:.1} {:.1})""#,
            at.0, at.1
        );
        c.text(at, &style, &f.kind);
    }
}

fn fault_tooltip(f: &Fault) -> String {
    match &f.note {
        Some(note) => format!("{}: {} ({note})", f.kind, f.detail),
        None => format!("{}: {}", f.kind, f.detail),
    }
}

/// Lists the fault kinds that occurred, beside the latency panel.
fn draw_fault_legend(c: &mut Canvas, faults: &[Fault]) {
    let kinds: BTreeSet<&str> = faults.iter().map(|f| f.kind.as_str()).collect();
    if kinds.is_empty() {
        return;
    }
    let entries: Vec<(&str, String)> = kinds
        .iter()
        .map(|k| (fault_colour(k), k.to_string()))
        .collect();
    draw_legend(c, PANELS[1], "fault windows", &entries, Swatch::Block);
}

/// A dashed vertical line across all panels, labelled near the top of the
/// first; skipped for a time that was never set.
fn draw_marker(c: &mut Canvas, x: &TimeAxis, ms: f64, label: &str, anchor: &str) {
    if !(ms.is_finite() && ms > 0.0) {
        return;
    }
    let px = x.px(ms);
    c.line((px, PANELS[0].top()), (px, PANELS[2].bottom()), MARKER);
    let dx = if anchor == "end" { -4.0 } else { 4.0 };
    let style = format!(
        r##"font-size="10" text-anchor="{anchor}" fill="#333" stroke="white" stroke-width="3" paint-order="stroke""##
    );
    c.text((px + dx, PANELS[0].top() + 12.0), &style, label);
}

fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Ok => 0,
        Outcome::Fail => 1,
        Outcome::Unknown => 2,
    }
}

/// Completions per 1-second bucket, indexed `[bucket][outcome_index]`;
/// always at least one bucket, and every finite non-negative completion
/// time lands in one (late ones in the last).
fn bucket_counts(ops: &[Op], max_s: f64) -> Vec<[u64; 3]> {
    let n = (max_s.ceil() as usize).clamp(1, MAX_BUCKETS);
    let mut buckets = vec![[0u64; 3]; n];
    for op in ops
        .iter()
        .filter(|o| o.complete_ms.is_finite() && o.complete_ms >= 0.0)
    {
        let i = ((op.complete_ms / 1000.0).floor() as usize).min(n - 1);
        buckets[i][outcome_index(op.outcome)] += 1;
    }
    buckets
}

fn draw_ops_panel(c: &mut Canvas, x: &TimeAxis, ops: &[Op]) {
    let p = PANELS[0];
    let buckets = bucket_counts(ops, x.max_s);
    let max = buckets.iter().flatten().copied().max().unwrap_or(0);
    // At least 5 so an idle run gets whole-number ticks.
    let (top, step) = linear_axis((max as f64).max(5.0), 5.0);
    draw_frame(c, x, p, "operations completed per second", "ops / s");
    draw_linear_y(c, p, top, step);
    let series = [
        (OK_COLOUR, "ok"),
        (FAIL_COLOUR, "fail"),
        (UNKNOWN_COLOUR, "unknown"),
    ];
    for (i, (colour, _)) in series.iter().enumerate() {
        let pts: Vec<(f64, f64)> = buckets
            .iter()
            .enumerate()
            .map(|(b, counts)| {
                let t_ms = (b as f64 + 0.5) * 1000.0;
                (x.px(t_ms), y_linear(p, counts[i] as f64, top))
            })
            .collect();
        c.polyline(&pts, colour, p);
    }
    let entries: Vec<(&str, String)> = series
        .iter()
        .map(|&(colour, label)| (colour, label.to_string()))
        .collect();
    draw_legend(c, p, "outcome", &entries, Swatch::Line);
}

/// `(complete_ms, latency_ms)` of ok ops with finite times.
fn latency_points(ops: &[Op]) -> Vec<(f64, f64)> {
    ops.iter()
        .filter(|o| o.outcome == Outcome::Ok)
        .map(|o| (o.complete_ms, o.complete_ms - o.invoke_ms))
        .filter(|(t, l)| t.is_finite() && l.is_finite())
        .collect()
}

/// Decades on the log axis: `10^decades` is the max latency rounded up to a
/// power of ten, at least 10 ms and at most 10^12 ms.
fn log_decades(max_ms: f64) -> u32 {
    if max_ms.is_finite() && max_ms > 1.0 {
        (max_ms.log10().ceil() as u32).clamp(1, 12)
    } else {
        1
    }
}

fn draw_latency_panel(c: &mut Canvas, x: &TimeAxis, ops: &[Op]) {
    let p = PANELS[1];
    let dots = latency_points(ops);
    let decades = log_decades(finite_max(dots.iter().map(|d| d.1)));
    draw_frame(c, x, p, "ack latency of ok operations", "latency (ms, log)");
    draw_log_y(c, p, decades);
    // Deterministic striding keeps the file bounded and the shape intact.
    let stride = dots.len().div_ceil(MAX_DOTS).max(1);
    let _ = writeln!(
        c.out,
        r#"<g fill="{OK_COLOUR}" fill-opacity="0.5" clip-path="url(#{})">"#,
        p.clip_id()
    );
    for &(t, l) in dots.iter().step_by(stride) {
        let _ = writeln!(
            c.out,
            r#"<circle cx="{:.1}" cy="{:.1}" r="1.5"/>"#,
            x.px(t),
            y_log(p, l, decades)
        );
    }
    c.out.push_str("</g>\n");
}

/// Lag points of one sink; samples without that sink or without `seconds`
/// are skipped.
fn lag_points(x: &TimeAxis, p: Panel, samples: &[Sample], sink: &str, top: f64) -> Vec<(f64, f64)> {
    samples
        .iter()
        .filter_map(|s| Some((s.t_ms, s.sinks.get(sink)?.seconds?)))
        .filter(|(t, secs)| t.is_finite() && secs.is_finite())
        .map(|(t, secs)| (x.px(t), y_linear(p, secs, top)))
        .collect()
}

fn draw_lag_panel(c: &mut Canvas, x: &TimeAxis, samples: &[Sample]) {
    let p = PANELS[2];
    let sinks: BTreeSet<&str> = samples
        .iter()
        .flat_map(|s| s.sinks.keys().map(String::as_str))
        .collect();
    let max = finite_max(
        samples
            .iter()
            .flat_map(|s| s.sinks.values().filter_map(|l| l.seconds)),
    );
    let (top, step) = linear_axis(max.max(1.0), 5.0);
    draw_frame(c, x, p, "export lag per sink", "export lag (s)");
    draw_linear_y(c, p, top, step);
    let mut entries = Vec::with_capacity(sinks.len());
    for (i, sink) in sinks.iter().enumerate() {
        let colour = SINK_COLOURS[i % SINK_COLOURS.len()];
        c.polyline(&lag_points(x, p, samples, sink, top), colour, p);
        entries.push((colour, sink.to_string()));
    }
    if !entries.is_empty() {
        draw_legend(c, p, "sink", &entries, Swatch::Line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Protocol, Signal, SinkLag};

    fn ok_op(n: u64, invoke_ms: f64, complete_ms: f64) -> Op {
        Op {
            op: n,
            client: 0,
            node: 1,
            protocol: Protocol::Http,
            signal: Signal::Metrics,
            records: 1,
            invoke_ms,
            complete_ms,
            outcome: Outcome::Ok,
            error: None,
        }
    }

    /// The opening tags of every `<rect` element in `s`.
    fn rect_tags(s: &str) -> Vec<&str> {
        s.match_indices("<rect")
            .map(|(i, _)| {
                let rest = &s[i..];
                &rest[..rest.find('>').unwrap_or(rest.len())]
            })
            .collect()
    }

    #[test]
    fn empty_history_is_a_valid_document() {
        let s = svg(&History::default(), "empty");
        assert!(s.starts_with("<svg"));
        assert!(s.ends_with("</svg>\n"));
        assert!(!s.contains("NaN"));
        assert!(!s.contains("inf"));
        assert_eq!(s.matches("<clipPath").count(), 3);
    }

    #[test]
    fn open_fault_is_shaded_until_the_final_heal() {
        let h = History {
            faults: vec![Fault {
                kind: "partition".into(),
                detail: "isolate leader n2".into(),
                start_ms: 1000.0,
                end_ms: None,
                note: None,
            }],
            healed_ms: 5000.0,
            load_end_ms: 4000.0,
            ..History::default()
        };
        let s = svg(&h, "t");
        let faults: Vec<&str> = rect_tags(&s)
            .into_iter()
            .filter(|t| t.contains(r#"class="fault""#))
            .collect();
        assert_eq!(faults.len(), 1);
        // The axis spans 0..5 s over 960 px: 1 s is x=272, 1..5 s is 768 px.
        assert!(faults[0].contains(&format!(r#"fill="{}""#, fault_colour("partition"))));
        assert!(faults[0].contains(r#"x="272.0""#), "{}", faults[0]);
        assert!(faults[0].contains(r#"width="768.0""#), "{}", faults[0]);
        assert!(s.contains(">healed</text>"));
        assert!(s.contains(">load stops</text>"));
    }

    #[test]
    fn title_and_names_are_escaped() {
        let mut sample = Sample {
            t_ms: 500.0,
            ..Sample::default()
        };
        sample.sinks.insert(
            "lo&ki".into(),
            SinkLag {
                entries: 1,
                seconds: Some(2.0),
            },
        );
        let h = History {
            samples: vec![sample],
            ..History::default()
        };
        let s = svg(&h, "a<b");
        assert!(s.contains("a&lt;b"));
        assert!(!s.contains("a<b"));
        assert!(s.contains(">lo&amp;ki</text>"));
    }

    #[test]
    fn latency_dots_are_capped_by_striding() {
        let ops: Vec<Op> = (0..50_000u64)
            .map(|i| ok_op(i, i as f64, i as f64 + 1.0 + (i % 25_000) as f64))
            .collect();
        let h = History {
            ops,
            ..History::default()
        };
        let s = svg(&h, "many");
        let dots = s.matches("<circle").count();
        assert!(dots > 0 && dots <= MAX_DOTS, "{dots} dots");
        // Max latency 25000 ms rounds up to a 10^5 ms axis top.
        assert!(s.contains(">100000</text>"));
        assert!(!s.contains(">1000000</text>"));
    }

    #[test]
    fn non_finite_times_are_left_out() {
        let h = History {
            ops: vec![ok_op(0, 0.0, f64::NAN), ok_op(1, 10.0, f64::INFINITY)],
            ..History::default()
        };
        let s = svg(&h, "nan");
        assert!(!s.contains("NaN"));
        assert!(!s.contains("inf"));
        assert_eq!(s.matches("<circle").count(), 0);
    }

    #[test]
    fn axis_steps_are_round() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(12.0), 20.0);
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(linear_axis(37.0, 5.0), (40.0, 10.0));
        assert_eq!(fmt_tick(0.5, 0.5), "0.5");
        assert_eq!(fmt_tick(20.0, 10.0), "20");
    }
}
