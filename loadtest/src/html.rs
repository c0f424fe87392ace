//! `--report FILE.html`: one self-contained page (inline SVG and CSS, no scripts, nothing fetched)
//! with the run's table, a latency-over-time chart, a throughput chart and a latency-distribution
//! chart on a "nines" axis, so the tail is as wide as the median.

use std::fmt::Write;

use super::client::{EndpointReport, SecondPoint};
use super::Report;

const PALETTE: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f", "#bcbd22",
];
const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;
/// Endpoints with fewer requests are set-up calls: in the table, not in the charts.
const CHARTED_MIN_REQUESTS: u64 = 20;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

struct Series {
    name: String,
    color: &'static str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// How a value maps onto an axis.
#[derive(Clone, Copy)]
enum Scale {
    Linear {
        max: f64,
    },
    /// Base-10 logarithmic between two positive bounds.
    Log {
        min: f64,
        max: f64,
    },
}

impl Scale {
    fn fraction(self, v: f64) -> f64 {
        match self {
            Self::Linear { max } => (v / max.max(1e-9)).clamp(0.0, 1.0),
            Self::Log { min, max } => {
                let (lo, hi) = (min.log10(), max.log10());
                ((v.max(min).log10() - lo) / (hi - lo).max(1e-9)).clamp(0.0, 1.0)
            }
        }
    }

    fn ticks(self) -> Vec<f64> {
        match self {
            Self::Linear { max } => {
                let raw = max / 5.0;
                let magnitude = 10_f64.powf(raw.max(1e-9).log10().floor());
                let step = [1.0, 2.0, 5.0, 10.0]
                    .iter()
                    .map(|m| m * magnitude)
                    .find(|s| *s >= raw)
                    .unwrap_or(magnitude * 10.0);
                (0..=5)
                    .map(|i| i as f64 * step)
                    .filter(|v| *v <= max * 1.0001)
                    .collect()
            }
            Self::Log { min, max } => {
                let mut ticks = Vec::new();
                let mut v = 10_f64.powf(min.log10().floor());
                while v <= max * 1.0001 {
                    if v >= min * 0.9999 {
                        ticks.push(v);
                    }
                    v *= 10.0;
                }
                ticks
            }
        }
    }
}

fn number(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// An SVG line chart. `x_ticks` are positions with their labels.
fn chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    x: Scale,
    x_ticks: &[(f64, String)],
    y: Scale,
) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let px = |v: f64| LEFT + x.fraction(v) * plot_w;
    let py = |v: f64| TOP + (1.0 - y.fraction(v)) * plot_h;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img">
<style>{SVG_STYLE}</style><title>{}</title><text x="{LEFT}" y="18" class="t">{}</text>
<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" class="frame"/>
"#,
        escape(title),
        escape(title)
    );
    for v in y.ticks() {
        let at = py(v);
        let _ = writeln!(
            svg,
            r#"<line x1="{LEFT}" x2="{}" y1="{at:.1}" y2="{at:.1}" class="grid"/><text x="{}" y="{:.1}" class="yl">{}</text>"#,
            LEFT + plot_w,
            LEFT - 6.0,
            at + 4.0,
            number(v)
        );
    }
    for (v, label) in x_ticks {
        let at = px(*v);
        let _ = writeln!(
            svg,
            r#"<line x1="{at:.1}" x2="{at:.1}" y1="{TOP}" y2="{}" class="grid"/><text x="{at:.1}" y="{}" class="xl">{}</text>"#,
            TOP + plot_h,
            TOP + plot_h + 16.0,
            escape(label)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" class="xl">{}</text><text x="14" y="{}" class="yt" transform="rotate(-90 14 {})">{}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 4.0,
        escape(x_label),
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(y_label)
    );
    for s in series {
        let points: Vec<String> = s
            .points
            .iter()
            .map(|(a, b)| format!("{:.1},{:.1}", px(*a), py(*b)))
            .collect();
        let dash = if s.dashed {
            r#" stroke-dasharray="5 4""#
        } else {
            ""
        };
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.6"{dash} points="{}"><title>{}</title></polyline>"#,
            s.color,
            points.join(" "),
            escape(&s.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn legend(series: &[Series]) -> String {
    let mut out = String::from(r#"<ul class="legend">"#);
    for s in series {
        let style = if s.dashed { "dashed" } else { "solid" };
        let _ = write!(
            out,
            r#"<li><span style="border-top:3px {style} {}"></span>{}</li>"#,
            s.color,
            escape(&s.name)
        );
    }
    out.push_str("</ul>\n");
    out
}

fn charted(report: &Report) -> Vec<(&EndpointReport, &'static str)> {
    report
        .endpoints
        .iter()
        .filter(|e| e.count >= CHARTED_MIN_REQUESTS)
        .zip(PALETTE.iter().cycle().copied())
        .collect()
}

fn latency_over_time(report: &Report) -> String {
    let mut series = Vec::new();
    for (e, color) in charted(report) {
        for (dashed, label, pick) in [
            (
                false,
                "p99",
                (|p: &super::client::SecondPoint| p.p99_ms) as fn(&_) -> f64,
            ),
            (true, "p50", |p| p.p50_ms),
        ] {
            series.push(Series {
                name: format!("{} {label}", e.endpoint),
                color,
                dashed,
                points: e
                    .timeline
                    .iter()
                    .map(|p| (p.second as f64 + 0.5, pick(p)))
                    .collect(),
            });
        }
    }
    let last = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0_f64, f64::max)
        .ceil();
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0_f64, f64::max);
    time_chart(
        "Latency over time (per second: p99 solid, p50 dashed)",
        "ms",
        &series,
        last,
        top,
    ) + &legend(&series)
}

/// A chart over the run's seconds (`0..=last`, round ticks) with values up to `top`.
fn time_chart(title: &str, y_label: &str, series: &[Series], last: f64, top: f64) -> String {
    let x = Scale::Linear { max: last };
    let ticks: Vec<(f64, String)> = x.ticks().into_iter().map(|v| (v, number(v))).collect();
    chart(
        title,
        "seconds since start",
        y_label,
        series,
        x,
        &ticks,
        Scale::Linear { max: top * 1.05 },
    )
}

fn throughput_over_time(report: &Report) -> String {
    let per_second = summed_per_second(report, |p| p.count);
    one_series_chart(
        "Requests answered per second",
        "requests/s",
        "all endpoints",
        0,
        &per_second,
    )
}

fn errors_over_time(report: &Report) -> String {
    let per_second = summed_per_second(report, |p| p.errors);
    one_series_chart(
        "Errors per second",
        "errors/s",
        "no answer or 5xx",
        1,
        &per_second,
    )
}

/// `value` of every endpoint's second, summed per second of the run.
fn summed_per_second(report: &Report, value: impl Fn(&SecondPoint) -> u64) -> Vec<f64> {
    let mut per_second: Vec<f64> = Vec::new();
    for e in &report.endpoints {
        for p in &e.timeline {
            if per_second.len() <= p.second {
                per_second.resize(p.second + 1, 0.0);
            }
            per_second[p.second] += value(p) as f64;
        }
    }
    per_second
}

/// A chart over the run's seconds of one series, in the palette's `color`.
fn one_series_chart(
    title: &str,
    y_label: &str,
    name: &str,
    color: usize,
    per_second: &[f64],
) -> String {
    let series = vec![Series {
        name: name.to_owned(),
        color: PALETTE[color],
        dashed: false,
        points: per_second
            .iter()
            .enumerate()
            .map(|(s, n)| (s as f64 + 0.5, *n))
            .collect(),
    }];
    let last = (per_second.len() as f64).max(1.0);
    let top = per_second.iter().copied().fold(1.0_f64, f64::max);
    time_chart(title, y_label, &series, last, top)
}

/// What the run was asked to do, when, and against which builds.
fn parameters(report: &Report) -> String {
    let p = &report.parameters;
    let optional = |v: Option<String>| v.unwrap_or_else(|| "–".to_owned());
    let rows = [
        ("started (UTC)", report.started_at.clone()),
        ("client version", report.client_version.clone()),
        (
            "servers",
            report
                .urls
                .iter()
                .zip(&report.server_versions)
                .map(|(url, version)| format!("{url} (version {version})"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("riders", p.riders.to_string()),
        ("duration", format!("{} s", p.duration_s)),
        ("lifecycles", optional(p.lifecycles.map(|n| n.to_string()))),
        ("rate", optional(p.rate.map(|r| format!("{r}/s")))),
        ("concurrency", p.concurrency.to_string()),
        ("drivers", p.drivers.to_string()),
        ("bookings", p.bookings.to_string()),
        ("streams", p.streams.to_string()),
        ("request timeout", format!("{} ms", p.request_timeout_ms)),
        ("token", if p.token { "yes" } else { "no" }.to_owned()),
    ];
    let cells: String = rows
        .iter()
        .map(|(name, value)| format!("<tr><th>{name}</th><td>{}</td></tr>", escape(value)))
        .collect();
    format!("<h2>Parameters</h2><table>{cells}</table>\n")
}

/// x position of a percentile on the "nines" axis: 0 for 0 %, 1 for 90 %, 2 for 99 %, …
fn nines(percentile: f64) -> f64 {
    -(1.0 - (percentile / 100.0).min(0.99999)).log10()
}

fn latency_distribution(report: &Report) -> String {
    let series: Vec<Series> = charted(report)
        .into_iter()
        .map(|(e, color)| Series {
            name: e.endpoint.clone(),
            color,
            dashed: false,
            points: e
                .distribution
                .iter()
                .map(|p| (nines(p.percentile), p.ms))
                .collect(),
        })
        .collect();
    let values = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let min = values.clone().fold(f64::MAX, f64::min).max(0.001);
    let max = values.fold(0.0_f64, f64::max).max(min * 10.0);
    let ticks: Vec<(f64, String)> = [0.0, 90.0, 99.0, 99.9, 99.99, 99.999]
        .iter()
        .map(|p| (nines(*p), format!("{p}%")))
        .collect();
    chart(
        "Latency distribution (percentile of requests at or below)",
        "percentile",
        "ms (log)",
        &series,
        // A little room right of the last tick for its label.
        Scale::Linear { max: 5.3 },
        &ticks,
        Scale::Log {
            min: 10_f64.powf(min.log10().floor()),
            max: 10_f64.powf(max.log10().ceil()),
        },
    ) + &legend(&series)
}

fn table(report: &Report) -> String {
    let mut out = String::from(
        "<table><tr><th>endpoint</th><th>count</th><th>ok %</th><th>p50 ms</th><th>p90 ms</th>\
         <th>p99 ms</th><th>max ms</th><th>statuses</th></tr>\n",
    );
    for e in &report.endpoints {
        let statuses: Vec<String> = e
            .statuses
            .iter()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td>\
             <td>{:.2}</td><td>{}</td></tr>",
            escape(&e.endpoint),
            e.count,
            e.success_rate * 100.0,
            e.p50_ms,
            e.p90_ms,
            e.p99_ms,
            e.max_ms,
            escape(&statuses.join(", "))
        );
    }
    out.push_str("</table>\n");
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:820px}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
td:first-child,th:first-child,td:last-child{text-align:left}.ok{color:#2a7}.bad{color:#c22}\
svg{display:block;margin-top:1.5em}.legend{list-style:none;padding:0;columns:2;font-size:12px}\
.legend span{display:inline-block;width:24px;margin-right:6px;vertical-align:middle}\
pre{background:#f6f6f6;padding:.6em;overflow:auto}";

/// Inside each chart, so an SVG cut out of the page still renders the same.
const SVG_STYLE: &str =
    "text{font:11px system-ui,sans-serif;fill:#222}.frame{fill:none;stroke:#999}\
.grid{stroke:#eee}.t{font-size:13px;font-weight:600}.xl{text-anchor:middle}.yl{text-anchor:end}\
.yt{text-anchor:middle}";

/// The whole page.
pub fn render(report: &Report) -> String {
    let verdict = if report.passed() {
        r#"<p class="ok">Invariants: all held.</p>"#.to_owned()
    } else {
        let items: String = report
            .violations
            .iter()
            .take(50)
            .map(|v| format!("<li>{}</li>", escape(v)))
            .collect();
        format!(
            r#"<p class="bad">Invariants: {} broken.</p><ul>{items}</ul>"#,
            report.violations.len()
        )
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>ridelock loadtest: {scenario}</title><style>{STYLE}</style></head><body>\n\
         <h1>ridelock loadtest: {scenario}</h1>\n\
         <p>{elapsed:.2} s, {lifecycles} lifecycles ({per_s:.1}/s), targets: {urls}</p>\n\
         {verdict}\n{parameters}{table}{time}{throughput}{errors}{distribution}\
         <h2>Lock counters</h2><pre>before: {before}\nafter:  {after}</pre>\n</body></html>\n",
        scenario = escape(&format!("{:?}", report.scenario)),
        elapsed = report.elapsed_s,
        lifecycles = report.lifecycles,
        per_s = report.lifecycles_per_s,
        urls = escape(&report.urls.join(", ")),
        parameters = parameters(report),
        table = table(report),
        time = latency_over_time(report),
        throughput = throughput_over_time(report),
        errors = errors_over_time(report),
        distribution = latency_distribution(report),
        before = escape(&report.lock_counters_before.to_string()),
        after = escape(&report.lock_counters_after.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nines_axis_gives_each_nine_equal_width() {
        assert!(nines(0.0).abs() < 1e-9);
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert!((nines(100.0) - 5.0).abs() < 1e-9);
    }

    #[test]
    fn axis_ticks_are_round_numbers_within_range() {
        assert_eq!(
            Scale::Linear { max: 10.0 }.ticks(),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        assert_eq!(
            Scale::Log {
                min: 0.1,
                max: 100.0
            }
            .ticks(),
            vec![0.1, 1.0, 10.0, 100.0]
        );
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape(r#"<a href="x">&</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
