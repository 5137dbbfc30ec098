//! `autoscaler-sim tune`: runs `ours` over a grid of settings, keeps the Pareto frontier
//! of cost vs degraded+unserved requests vs evictions, and names the cheapest setting
//! that meets an objective, as the flags and chart values to set.
//!
//! A grid point is one value per `--vary`; points are numbered in row-major order (the
//! last `--vary` changes fastest). `--shard i/n` runs the points whose number is `i`
//! modulo `n`; [`merge`] joins the shards' files into exactly the result (and bytes) an
//! unsharded run writes.

use crate::error::InputError;
use crate::scenario::Loaded;
use crate::sim::{self, PolicyKind};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// A setting the grid may vary: its command-line flag, chart value, and where it lives
/// in the scenario (`*` matches every element of a list).
struct Knob {
    flag: &'static str,
    chart: Option<&'static str>,
    path: &'static str,
}

/// The settings known by their flag name; anything else is given as a scenario path.
const KNOBS: &[Knob] = &[
    Knob {
        flag: "ice-cooloff",
        chart: Some("iceCooloff.initial"),
        path: "autoscaler.cool_off.initial",
    },
    Knob {
        flag: "ice-cooloff-max",
        chart: Some("iceCooloff.max"),
        path: "autoscaler.cool_off.max",
    },
    Knob {
        flag: "drain-back-after",
        chart: Some("drainBack.after"),
        path: "autoscaler.drain_back.after",
    },
    Knob {
        flag: "drain-back-budget",
        chart: Some("drainBack.budget"),
        path: "autoscaler.drain_back.budget",
    },
    Knob {
        flag: "scale-down-unneeded-time",
        chart: Some("extraArgs.scale-down-unneeded-time"),
        path: "autoscaler.scale_down.unneeded_time",
    },
    Knob {
        flag: "scale-down-utilization-threshold",
        chart: Some("extraArgs.scale-down-utilization-threshold"),
        path: "autoscaler.scale_down.utilization_threshold",
    },
    Knob {
        flag: "scale-down-delay-after-add",
        chart: Some("extraArgs.scale-down-delay-after-add"),
        path: "autoscaler.scale_down.delay_after_add",
    },
    Knob {
        flag: "scale-down-deletion-cost-nodes",
        chart: Some("extraArgs.scale-down-deletion-cost-nodes"),
        path: "autoscaler.scale_down.deletion_cost_nodes",
    },
    Knob {
        flag: "scale-down-spare-nodes",
        chart: Some("extraArgs.scale-down-spare-nodes"),
        path: "autoscaler.scale_down.spare_nodes",
    },
    Knob {
        flag: "zone-skew-threshold",
        chart: Some("zoneBalancing.skewThreshold"),
        path: "autoscaler.balance.skew_threshold",
    },
    // The HPA's own settings: set on each HorizontalPodAutoscaler, not on the autoscaler.
    Knob {
        flag: "hpa-scale-down-window",
        chart: None,
        path: "services.*.behavior.scaleDown.stabilizationWindowSeconds",
    },
    Knob {
        flag: "hpa-target",
        chart: None,
        path: "services.*.target_utilization",
    },
    Knob {
        flag: "hpa-scale-up-window",
        chart: None,
        path: "services.*.behavior.scaleUp.stabilizationWindowSeconds",
    },
];

/// One `--vary name=v1,v2,...`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Vary {
    /// Flag name (`ice-cooloff`) or scenario path (`autoscaler.balance.rebalance_after`).
    pub name: String,
    /// Values, as written.
    pub values: Vec<String>,
}

impl Vary {
    /// Parses `name=v1,v2`.
    pub fn parse(text: &str) -> Result<Vary, InputError> {
        let (name, values) = text.split_once('=').ok_or_else(|| {
            InputError::Usage(format!(
                "--vary {text:?}: write it as name=v1,v2 (e.g. ice-cooloff=1m,3m)"
            ))
        })?;
        let values: Vec<String> = values
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() {
            return Err(InputError::Usage(format!("--vary {name}: no values")));
        }
        let name = name.trim().trim_start_matches("--").to_string();
        if knob(&name).is_none() && !name.contains('.') {
            let known: Vec<&str> = KNOBS.iter().map(|k| k.flag).collect();
            return Err(InputError::Usage(format!(
                "--vary {name}: not a tunable flag ({}), nor a scenario path like autoscaler.balance.rebalance_after",
                known.join(", ")
            )));
        }
        Ok(Vary { name, values })
    }
}

fn knob(name: &str) -> Option<&'static Knob> {
    KNOBS.iter().find(|k| k.flag == name)
}

/// What one grid point measured (`ours` only).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Instance cost, USD.
    pub cost: f64,
    /// Requests served above the saturation utilization, fraction of all requests.
    pub degraded: f64,
    /// Requests not served, fraction of all requests.
    pub unserved: f64,
    /// Pods evicted.
    pub evictions: u64,
    /// Pod-seconds pending.
    pub pending_pod_seconds: u64,
    /// Time to capacity, p95 seconds.
    pub ttc_p95: u64,
}

impl Metrics {
    fn get(&self, name: &str) -> Option<f64> {
        Some(match name {
            "cost" => self.cost,
            "degraded" => self.degraded,
            "unserved" => self.unserved,
            "degraded+unserved" => self.degraded + self.unserved,
            "evictions" => self.evictions as f64,
            "pending" | "pending_pod_seconds" => self.pending_pod_seconds as f64,
            "ttc_p95" => self.ttc_p95 as f64,
            _ => return None,
        })
    }
}

const METRICS: &str = "cost, degraded, unserved, degraded+unserved, evictions, pending, ttc_p95";

/// One `metric<=value` (a trailing `%` divides by 100).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    /// Metric name.
    pub metric: String,
    /// Upper bound.
    pub max: f64,
    /// As written.
    pub text: String,
}

impl Objective {
    /// Parses `degraded<=0.1%,evictions<=20`.
    pub fn parse_all(text: &str) -> Result<Vec<Objective>, InputError> {
        text.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|part| {
                let bad = || InputError::Usage(format!("--objective {part:?}: write it as metric<=bound, e.g. degraded<=0.1% (metrics: {METRICS})"));
                let (metric, bound) = part.split_once("<=").ok_or_else(bad)?;
                let metric = metric.trim().to_string();
                let bound = bound.trim();
                let max = match bound.strip_suffix('%') {
                    Some(p) => p.trim().parse::<f64>().map_err(|_| bad())? / 100.0,
                    None => bound.parse::<f64>().map_err(|_| bad())?,
                };
                if Metrics::get(&ZERO, &metric).is_none() {
                    return Err(bad());
                }
                Ok(Objective { metric, max, text: part.trim().to_string() })
            })
            .collect()
    }

    fn met(&self, m: &Metrics) -> bool {
        m.get(&self.metric).is_some_and(|v| v <= self.max + 1e-12)
    }
}

const ZERO: Metrics = Metrics {
    cost: 0.0,
    degraded: 0.0,
    unserved: 0.0,
    evictions: 0,
    pending_pod_seconds: 0,
    ttc_p95: 0,
};

/// One grid point and what it measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Number in the grid.
    pub index: usize,
    /// One value per `--vary`, in order.
    pub values: Vec<String>,
    /// Measured.
    pub metrics: Metrics,
}

/// What a run (or a shard of it) was asked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Question {
    /// Scenario or recording.
    pub input: String,
    /// Seed.
    pub seed: u64,
    /// The grid.
    pub vary: Vec<Vary>,
    /// Constraints.
    pub objective: Vec<Objective>,
    /// Metric to minimise among the points that meet the objective.
    pub minimise: String,
}

/// A shard's output: the question and its points.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shard {
    /// What was asked.
    pub question: Question,
    /// This shard's number and the shard count.
    pub shard: (usize, usize),
    /// Points of the whole grid.
    pub grid_size: usize,
    /// The points this shard ran.
    pub points: Vec<Point>,
}

/// The whole result: every point, the frontier and the recommendation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TuneResult {
    /// What was asked.
    pub question: Question,
    /// Every point, by index.
    pub points: Vec<Point>,
    /// Indexes of the Pareto frontier (cost, degraded+unserved, evictions), cheapest first.
    pub frontier: Vec<usize>,
    /// Index of the point that meets the objective at the least `minimise`, if any.
    pub best: Option<usize>,
}

/// Points in the grid.
pub fn grid_size(vary: &[Vary]) -> usize {
    vary.iter().map(|v| v.values.len()).product()
}

fn values_of(vary: &[Vary], mut index: usize) -> Vec<String> {
    let mut out = vec![String::new(); vary.len()];
    for (i, v) in vary.iter().enumerate().rev() {
        out[i] = v.values[index % v.values.len()].clone();
        index /= v.values.len();
    }
    out
}

/// A value as the scenario wants it: Go durations become seconds where a number is.
fn yaml_value(text: &str, current: Option<&serde_yaml_ng::Value>) -> serde_yaml_ng::Value {
    if current.is_some_and(serde_yaml_ng::Value::is_number) && text.parse::<f64>().is_err() {
        if let Some(secs) = go_duration_secs(text) {
            return serde_yaml_ng::Value::from(secs);
        }
    }
    serde_yaml_ng::from_str(text).unwrap_or_else(|_| serde_yaml_ng::Value::String(text.to_string()))
}

fn go_duration_secs(text: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut num = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += n * match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            _ => return None,
        };
    }
    num.is_empty().then_some(total.round() as u64)
}

fn set_path(root: &mut serde_yaml_ng::Value, path: &[&str], text: &str) -> usize {
    use serde_yaml_ng::Value;
    let Some((head, rest)) = path.split_first() else {
        return 0;
    };
    if *head == "*" {
        return match root.as_sequence_mut() {
            Some(items) => items.iter_mut().map(|i| set_path(i, rest, text)).sum(),
            None => 0,
        };
    }
    let Some(map) = root.as_mapping_mut() else {
        return 0;
    };
    let key = Value::String(head.to_string());
    if rest.is_empty() {
        let v = yaml_value(text, map.get(&key));
        map.insert(key, v);
        return 1;
    }
    let child = map
        .entry(key)
        .or_insert_with(|| Value::Mapping(Default::default()));
    if child.is_null() {
        *child = Value::Mapping(Default::default());
    }
    set_path(child, rest, text)
}

/// The scenario with one point's settings applied.
pub fn apply(loaded: &Loaded, vary: &[Vary], values: &[String]) -> Result<Loaded, InputError> {
    let mut doc =
        serde_yaml_ng::to_value(&loaded.scenario).map_err(|e| InputError::Usage(e.to_string()))?;
    for (v, value) in vary.iter().zip(values) {
        let path = knob(&v.name).map_or(v.name.as_str(), |k| k.path);
        let parts: Vec<&str> = path.split('.').collect();
        if set_path(&mut doc, &parts, value) == 0 {
            return Err(InputError::Usage(format!(
                "--vary {}: the scenario has no {path}",
                v.name
            )));
        }
    }
    let yaml = serde_yaml_ng::to_string(&doc).map_err(|e| InputError::Usage(e.to_string()))?;
    let scenario = crate::scenario::Scenario::from_yaml(&yaml, "the tuned scenario")
        .map_err(|e| InputError::Usage(format!("a --vary value is not accepted: {e}")))?;
    Ok(Loaded {
        scenario,
        trace: loaded.trace.clone(),
    })
}

/// Runs shard `shard.0` of `shard.1` (use `(0, 1)` for the whole grid); `progress` is
/// called once per finished point.
pub fn run_shard(
    loaded: &Loaded,
    question: &Question,
    shard: (usize, usize),
    progress: &(dyn Fn() + Sync),
) -> Result<Shard, InputError> {
    let size = grid_size(&question.vary);
    if shard.1 == 0 || shard.0 >= shard.1 {
        return Err(InputError::Usage(format!(
            "--shard {}/{}: write i/n with 0 <= i < n",
            shard.0, shard.1
        )));
    }
    // Check every value before spending minutes on the grid.
    let scenarios: Vec<(usize, Vec<String>, Loaded)> = (0..size)
        .filter(|i| i % shard.1 == shard.0)
        .map(|i| {
            let values = values_of(&question.vary, i);
            apply(loaded, &question.vary, &values).map(|l| (i, values, l))
        })
        .collect::<Result<_, _>>()?;
    let points = scenarios
        .into_par_iter()
        .map(|(index, values, l)| {
            let r = sim::run(&l, PolicyKind::Ours, question.seed, &|_| {});
            progress();
            Point {
                index,
                values,
                metrics: Metrics {
                    cost: r.cost_usd,
                    degraded: r.degraded_request_fraction,
                    unserved: r.unserved_request_fraction,
                    evictions: r.evictions,
                    pending_pod_seconds: r.pending_pod_seconds,
                    ttc_p95: r.time_to_capacity_s.p95,
                },
            }
        })
        .collect();
    Ok(Shard {
        question: question.clone(),
        shard,
        grid_size: size,
        points,
    })
}

/// Joins shards into the result an unsharded run gives.
pub fn merge(shards: Vec<Shard>) -> Result<TuneResult, InputError> {
    let first = shards
        .first()
        .ok_or_else(|| InputError::Usage("merge: no shard files".into()))?;
    let (question, size, n) = (first.question.clone(), first.grid_size, first.shard.1);
    let mut seen = vec![false; n];
    let mut points = Vec::with_capacity(size);
    for s in shards {
        if s.question != question || s.grid_size != size || s.shard.1 != n {
            return Err(InputError::Usage(format!("merge: shard {}/{} answers a different question (input, seed, --vary, --objective or --minimise differ)", s.shard.0, s.shard.1)));
        }
        if std::mem::replace(&mut seen[s.shard.0], true) {
            return Err(InputError::Usage(format!(
                "merge: shard {}/{n} given twice",
                s.shard.0
            )));
        }
        points.extend(s.points);
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(InputError::Usage(format!(
            "merge: shard {missing}/{n} is missing"
        )));
    }
    points.sort_by_key(|p| p.index);
    Ok(finish(question, points))
}

/// The frontier and the recommendation over all points.
pub fn finish(question: Question, points: Vec<Point>) -> TuneResult {
    let key = |m: &Metrics| [m.cost, m.degraded + m.unserved, m.evictions as f64];
    let dominated = |a: &Metrics| {
        points.iter().any(|b| {
            let (ka, kb) = (key(a), key(&b.metrics));
            kb.iter().zip(&ka).all(|(x, y)| x <= y) && kb.iter().zip(&ka).any(|(x, y)| x < y)
        })
    };
    let mut frontier: Vec<&Point> = points.iter().filter(|p| !dominated(&p.metrics)).collect();
    frontier.sort_by(|a, b| {
        a.metrics
            .cost
            .total_cmp(&b.metrics.cost)
            .then(a.index.cmp(&b.index))
    });
    let best = points
        .iter()
        .filter(|p| question.objective.iter().all(|o| o.met(&p.metrics)))
        .min_by(|a, b| {
            let (x, y) = (
                a.metrics.get(&question.minimise).unwrap_or(f64::INFINITY),
                b.metrics.get(&question.minimise).unwrap_or(f64::INFINITY),
            );
            x.total_cmp(&y).then(a.index.cmp(&b.index))
        })
        .map(|p| p.index);
    TuneResult {
        frontier: frontier.iter().map(|p| p.index).collect(),
        best,
        question,
        points,
    }
}

/// Checks `--minimise`.
pub fn check_metric(name: &str) -> Result<(), InputError> {
    ZERO.get(name)
        .map(|_| ())
        .ok_or_else(|| InputError::Usage(format!("--minimise {name:?}: one of {METRICS}")))
}

impl TuneResult {
    /// Pretty JSON (what `--json` and `merge` write).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain data") + "\n"
    }

    /// The recommendation in words: the flags and chart values, or why there is none.
    pub fn recommendation(&self) -> String {
        let q = &self.question;
        let objective: Vec<&str> = q.objective.iter().map(|o| o.text.as_str()).collect();
        let Some(best) = self
            .best
            .map(|i| &self.points[self.points.iter().position(|p| p.index == i).unwrap_or(0)])
        else {
            return format!(
                "no setting of the grid meets {}; widen the grid or relax the objective\n",
                objective.join(", ")
            );
        };
        let m = &best.metrics;
        let mut out = format!(
            "cheapest setting meeting {} (minimising {}): cost ${:.2}, degraded {:.3}%, unserved {:.3}%, evictions {}\n",
            objective.join(", "),
            q.minimise,
            m.cost,
            m.degraded * 100.0,
            m.unserved * 100.0,
            m.evictions
        );
        let mut flags = Vec::new();
        let mut chart = Vec::new();
        for (v, value) in q.vary.iter().zip(&best.values) {
            match knob(&v.name) {
                Some(k) if k.path.starts_with("services.") => {
                    let field = match k.flag {
                        "hpa-target" => "metrics[cpu].target.averageUtilization",
                        "hpa-scale-up-window" => "behavior.scaleUp.stabilizationWindowSeconds",
                        _ => "behavior.scaleDown.stabilizationWindowSeconds",
                    };
                    out.push_str(&format!(
                        "  HPA: spec.{field} = {value} on each HorizontalPodAutoscaler\n"
                    ));
                }
                Some(k) => {
                    flags.push(format!("--{}={value}", k.flag));
                    if let Some(c) = k.chart {
                        chart.push(format!("--set {c}={value}"));
                    }
                }
                None => out.push_str(&format!("  scenario: {} = {value}\n", v.name)),
            }
        }
        if !flags.is_empty() {
            out.push_str(&format!(
                "  flags: {}\n  helm:  {}\n",
                flags.join(" "),
                chart.join(" ")
            ));
        }
        out
    }

    /// The frontier as a terminal table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let names: Vec<&str> = self.question.vary.iter().map(|v| v.name.as_str()).collect();
        let _ = writeln!(
            out,
            "Pareto frontier ({} of {} points): {}",
            self.frontier.len(),
            self.points.len(),
            names.join(" | ")
        );
        let _ = writeln!(
            out,
            "{:>9} {:>10} {:>10} {:>9}  settings",
            "cost $", "degraded%", "unserved%", "evictions"
        );
        for p in self
            .frontier
            .iter()
            .filter_map(|i| self.points.iter().find(|p| p.index == *i))
        {
            let m = &p.metrics;
            let _ = writeln!(
                out,
                "{:>9.2} {:>10.3} {:>10.3} {:>9}  {}{}",
                m.cost,
                m.degraded * 100.0,
                m.unserved * 100.0,
                m.evictions,
                p.values.join(" | "),
                if Some(p.index) == self.best {
                    "  <- recommended"
                } else {
                    ""
                }
            );
        }
        out
    }

    /// A self-contained HTML page: cost vs degraded+unserved, every point grey, the
    /// frontier blue (dot size: evictions), the recommendation circled; and the table.
    pub fn html(&self) -> String {
        let (w, h, pad) = (760.0, 420.0, 60.0);
        let xs: Vec<f64> = self.points.iter().map(|p| p.metrics.cost).collect();
        let ys: Vec<f64> = self
            .points
            .iter()
            .map(|p| (p.metrics.degraded + p.metrics.unserved) * 100.0)
            .collect();
        let (x0, x1) = bounds(&xs);
        let (y0, y1) = bounds(&ys);
        let max_ev = self
            .points
            .iter()
            .map(|p| p.metrics.evictions)
            .max()
            .unwrap_or(0)
            .max(1) as f64;
        let sx = |x: f64| pad + (x - x0) / (x1 - x0) * (w - 2.0 * pad);
        let sy = |y: f64| h - pad - (y - y0) / (y1 - y0) * (h - 2.0 * pad);
        let mut svg = format!("<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>");
        let _ = write!(svg, "<line x1='{pad}' y1='{}' x2='{}' y2='{}' stroke='#333'/><line x1='{pad}' y1='{pad}' x2='{pad}' y2='{}' stroke='#333'/>", h - pad, w - pad, h - pad, h - pad);
        let _ = write!(
            svg,
            "<text x='{}' y='{}' text-anchor='middle'>cost, USD ({x0:.2} to {x1:.2})</text>",
            w / 2.0,
            h - 20.0
        );
        let _ = write!(svg, "<text x='15' y='{}' transform='rotate(-90 15 {})' text-anchor='middle'>degraded + unserved, % ({y0:.3} to {y1:.3})</text>", h / 2.0, h / 2.0);
        for (i, p) in self.points.iter().enumerate() {
            let on = self.frontier.contains(&p.index);
            let r = 3.0 + 9.0 * p.metrics.evictions as f64 / max_ev;
            let _ = write!(svg, "<circle cx='{:.1}' cy='{:.1}' r='{r:.1}' fill='{}' fill-opacity='0.7'><title>#{} {}: ${:.2}, {:.3}%, {} evictions</title></circle>", sx(xs[i]), sy(ys[i]), if on { "#1f6fd1" } else { "#bbb" }, p.index, p.values.join(" | "), p.metrics.cost, ys[i], p.metrics.evictions);
            if Some(p.index) == self.best {
                let _ = write!(svg, "<circle cx='{:.1}' cy='{:.1}' r='{:.1}' fill='none' stroke='#d12' stroke-width='2'/><text x='{:.1}' y='{:.1}' fill='#d12'>recommended</text>", sx(xs[i]), sy(ys[i]), r + 5.0, sx(xs[i]) + r + 8.0, sy(ys[i]) - 6.0);
            }
        }
        svg.push_str("</svg>");
        let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;");
        format!(
            "<!doctype html><html><head><meta charset='utf-8'><title>autoscaler-sim tune: {}</title></head><body style='font-family:sans-serif'><h1>Tuning {}</h1><p>{} points; blue: the Pareto frontier (dot size: evictions); red ring: the recommendation.</p>{svg}<pre>{}</pre><pre>{}</pre></body></html>\n",
            esc(&self.question.input), esc(&self.question.input), self.points.len(), esc(&self.recommendation()), esc(&self.table())
        )
    }
}

fn bounds(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}
