//! A self-contained HTML report: inline SVG charts (no scripts, no network).

use crate::report::Report;
use std::fmt::Write as _;

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

struct Line {
    label: String,
    color: &'static str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn chart(title: &str, y_label: &str, lines: &[Line]) -> String {
    let (w, h, ml, mr, mt, mb) = (960.0, 300.0, 70.0, 20.0, 30.0, 40.0);
    let x_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let y_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.08;
    let sx = |x: f64| ml + (w - ml - mr) * x / x_max;
    let sy = |y: f64| mt + (h - mt - mb) * (1.0 - y / y_max);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<figure class="chart"><figcaption>{}</figcaption><svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        esc(title),
        esc(title)
    );
    let _ = write!(
        s,
        r##"<rect x="{ml}" y="{mt}" width="{}" height="{}" fill="#fafafa" stroke="#ccc"/>"##,
        w - ml - mr,
        h - mt - mb
    );
    for i in 0..=4 {
        let y = y_max * f64::from(i) / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{ml}" x2="{}" y1="{y1:.1}" y2="{y1:.1}" stroke="#e4e4e4"/><text x="{}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
            w - mr,
            ml - 6.0,
            sy(y) + 4.0,
            if y_max >= 100.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.1}")
            },
            y1 = sy(y)
        );
    }
    let hours = x_max / 3600.0;
    let step = if hours > 12.0 {
        3600.0 * 2.0
    } else if hours > 3.0 {
        3600.0 / 2.0
    } else if hours > 1.0 {
        900.0
    } else {
        300.0
    };
    let mut x = 0.0;
    while x <= x_max {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle" font-size="11">{}</text>"#,
            sx(x),
            h - mb + 16.0,
            if step >= 3600.0 {
                format!("{:.0}h", x / 3600.0)
            } else {
                format!("{:.0}m", x / 60.0)
            }
        );
        x += step;
    }
    let _ = write!(
        s,
        r#"<text x="14" y="{:.1}" font-size="11" transform="rotate(-90 14 {:.1})" text-anchor="middle">{}</text>"#,
        h / 2.0,
        h / 2.0,
        esc(y_label)
    );
    for (i, l) in lines.iter().enumerate() {
        let pts: Vec<String> = l
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.6" {} points="{}"><title>{}</title></polyline>"#,
            l.color,
            if l.dashed {
                r#"stroke-dasharray="6 3""#
            } else {
                ""
            },
            pts.join(" "),
            esc(&l.label)
        );
        let lx = ml + 10.0 + (i % 4) as f64 * 215.0;
        let ly = 14.0 + (i / 4) as f64 * 0.0;
        let _ = write!(
            s,
            r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{}" stroke-width="3" {}/><text x="{}" y="{}" font-size="11">{}</text>"#,
            lx + 18.0,
            l.color,
            if l.dashed {
                r#"stroke-dasharray="6 3""#
            } else {
                ""
            },
            lx + 22.0,
            ly + 4.0,
            esc(&l.label)
        );
    }
    s.push_str("</svg></figure>\n");
    s
}

/// Renders the report as one HTML page.
pub fn render(r: &Report) -> String {
    let mut body = String::new();
    let policies: Vec<_> = r.policies.values().collect();
    let series = |f: &dyn Fn(&crate::report::SeriesPoint) -> f64,
                  p: &crate::report::PolicyReport| {
        p.series
            .iter()
            .map(|s| (s.t_s as f64, f(s)))
            .collect::<Vec<_>>()
    };
    // Demand vs capacity.
    let mut lines = Vec::new();
    if let Some(p) = policies.first() {
        lines.push(Line {
            label: "demand (req/s)".into(),
            color: "#444",
            dashed: false,
            points: series(&|s| s.demand_rps, p),
        });
    }
    for (i, p) in policies.iter().enumerate() {
        lines.push(Line {
            label: format!("capacity, {}", p.policy),
            color: COLORS[i % COLORS.len()],
            dashed: i > 0,
            points: series(&|s| s.capacity_rps, p),
        });
    }
    body.push_str(&chart("Demand vs serving capacity", "requests/s", &lines));
    let mut lines = Vec::new();
    for (i, p) in policies.iter().enumerate() {
        lines.push(Line {
            label: format!("spot, {}", p.policy),
            color: COLORS[2 * i % COLORS.len()],
            dashed: i > 0,
            points: series(&|s| f64::from(s.nodes_spot), p),
        });
        lines.push(Line {
            label: format!("on-demand, {}", p.policy),
            color: COLORS[(2 * i + 1) % COLORS.len()],
            dashed: i > 0,
            points: series(&|s| f64::from(s.nodes_on_demand), p),
        });
    }
    body.push_str(&chart("Nodes by capacity type", "nodes", &lines));
    let mut lines = Vec::new();
    for (i, p) in policies.iter().enumerate() {
        for (zi, z) in p.zones.iter().enumerate() {
            lines.push(Line {
                label: format!("{z}, {}", p.policy),
                color: COLORS[zi % COLORS.len()],
                dashed: i > 0,
                points: series(
                    &|s| f64::from(s.nodes_by_zone.get(zi).copied().unwrap_or(0)),
                    p,
                ),
            });
        }
    }
    body.push_str(&chart("Nodes per zone", "nodes", &lines));
    let mut lines = Vec::new();
    for (i, p) in policies.iter().enumerate() {
        lines.push(Line {
            label: format!("pending pods, {}", p.policy),
            color: COLORS[i % COLORS.len()],
            dashed: i > 0,
            points: series(&|s| f64::from(s.pending_pods), p),
        });
    }
    body.push_str(&chart("Pending (unschedulable) pods", "pods", &lines));

    let mut table = String::from("<table><tr><th>metric</th>");
    for p in &policies {
        let _ = write!(table, "<th>{}</th>", esc(&p.policy));
    }
    table.push_str("</tr>");
    type Row = (&'static str, fn(&crate::report::PolicyReport) -> String);
    let rows: [Row; 12] = [
        ("time to capacity p50 / p95 / max", |p| {
            let t = &p.time_to_capacity_s;
            format!("{}s / {}s / {}s", t.p50, t.p95, t.max)
        }),
        ("pending pod-seconds", |p| p.pending_pod_seconds.to_string()),
        ("unserved requests", |p| {
            format!("{:.3}%", p.unserved_request_fraction * 100.0)
        }),
        ("degraded requests (pods above saturation)", |p| {
            format!("{:.3}%", p.degraded_request_fraction * 100.0)
        }),
        ("seconds over HPA target", |p| {
            p.seconds_over_target.to_string()
        }),
        ("cost", |p| format!("${:.2}", p.cost_usd)),
        ("spot node-hours", |p| format!("{:.1}", p.node_hours.spot)),
        ("on-demand node-hours", |p| {
            format!("{:.1}", p.node_hours.on_demand)
        }),
        ("max AZ skew", |p| p.max_az_skew.to_string()),
        ("evictions", |p| p.evictions.to_string()),
        ("pod-seconds lost to evictions", |p| {
            p.disruptions.pod_seconds_lost.to_string()
        }),
        ("failed launches", |p| p.launch_failures.to_string()),
    ];
    for (label, f) in rows {
        let _ = write!(table, "<tr><td>{label}</td>");
        for p in &policies {
            let _ = write!(table, "<td>{}</td>", esc(&f(p)));
        }
        table.push_str("</tr>");
    }
    table.push_str("</table>");

    let mut log = String::new();
    for p in &policies {
        let _ = write!(
            log,
            "<details><summary>Decision log, {} ({} entries)</summary><table class=\"log\"><tr><th>t</th><th>kind</th><th>group</th><th>Δ</th><th>target</th><th>reason</th></tr>",
            esc(&p.policy),
            p.decisions.len()
        );
        for d in p.decisions.iter().take(500) {
            let _ = write!(
                log,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                d.t_s,
                esc(&d.kind),
                esc(&d.group),
                d.delta,
                d.new_target,
                esc(&d.reason)
            );
        }
        log.push_str("</table></details>\n");
    }

    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>autoscaler-sim: {name}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1000px; color: #222; }}
figure.chart {{ margin: 1rem 0; }} figure.chart svg {{ width: 100%; height: auto; display: block; }}
figcaption {{ font-weight: 600; margin-bottom: .3rem; }}
table {{ border-collapse: collapse; margin: 1rem 0; }} td, th {{ border: 1px solid #ddd; padding: .25rem .6rem; text-align: left; }}
table.log td {{ font-size: 12px; vertical-align: top; }}
</style></head><body>
<h1>{name}</h1><p>{desc}</p><p>{dur} s simulated, seed {seed}, trace {trace}. Dashed lines: second policy.</p>
{table}
{body}
{log}
</body></html>
"#,
        name = esc(&r.scenario),
        desc = esc(&r.description),
        dur = r.duration_s,
        seed = r.seed,
        trace = esc(&r.trace),
    )
}
