//! Traffic traces: request counts over time, from a CSV file or from points.
//!
//! A CSV row `timestamp,requests` is the number of requests in the interval starting at
//! `timestamp`; the interval is the trace's resolution (the most common gap between rows, so
//! per-second and per-minute traces both work). Seconds no row covers carry no traffic.
//! Timestamps are `YYYY-MM-DD HH:MM[:SS]` (a `T` separator and a trailing `Z` are
//! accepted; the zone is ignored, only differences matter) or epoch seconds.

use crate::error::InputError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Requests per second for every simulated second, starting at 0.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// Requests per second, one value per second.
    pub rps: Vec<f64>,
    /// Resolution of the source in seconds (1 for points).
    pub resolution_s: u64,
    /// Where it came from (file path or "points").
    pub source: String,
}

/// Column names of a CSV trace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    /// Time column; default `timestamp`, else the first column whose name contains
    /// `time`, `second` or `minute`.
    #[serde(default)]
    pub time: Option<String>,
    /// Count column; default `requests`.
    #[serde(default)]
    pub requests: Option<String>,
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    // Howard Hinnant's algorithm (public domain).
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses a timestamp into seconds since the Unix epoch.
pub fn parse_timestamp(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(v) = s.parse::<f64>() {
        return v.is_finite().then_some(v);
    }
    let s = s.trim_end_matches('Z');
    let (date, time) = s.split_once([' ', 'T'])?;
    let mut d = date.split('-');
    let (y, mo, da) = (d.next()?, d.next()?, d.next()?);
    if d.next().is_some() {
        return None;
    }
    let (y, mo, da): (i64, i64, i64) = (y.parse().ok()?, mo.parse().ok()?, da.parse().ok()?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) {
        return None;
    }
    let mut t = time.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let sec: f64 = match t.next() {
        Some(x) => x.parse().ok()?,
        None => 0.0,
    };
    if t.next().is_some()
        || !(0..24).contains(&h)
        || !(0..60).contains(&mi)
        || !(0.0..61.0).contains(&sec)
    {
        return None;
    }
    Some((days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60) as f64 + sec)
}

impl Trace {
    /// A trace from `(second, requests/s)` points, linearly interpolated, held after the
    /// last point until `duration_s`.
    pub fn from_points(points: &[(f64, f64)], duration_s: u64) -> Trace {
        let mut rps = Vec::with_capacity(duration_s as usize);
        let mut k = 0;
        for s in 0..duration_s {
            let t = s as f64;
            while k + 1 < points.len() && points[k + 1].0 <= t {
                k += 1;
            }
            let v = match (points.get(k), points.get(k + 1)) {
                (None, _) => 0.0,
                (Some(&(t0, v0)), _) if t < t0 => v0,
                (Some(&(t0, v0)), Some(&(t1, v1))) if t1 > t0 => {
                    v0 + (v1 - v0) * (t - t0) / (t1 - t0)
                }
                (Some(&(_, v0)), _) => v0,
            };
            rps.push(v.max(0.0));
        }
        Trace {
            rps,
            resolution_s: 1,
            source: "points".into(),
        }
    }

    /// Reads a CSV trace. Errors name the file, the line and the field.
    pub fn from_csv(path: &Path, columns: &Columns) -> Result<Trace, InputError> {
        let file = path.display().to_string();
        let text = std::fs::read(path).map_err(|source| InputError::Read {
            file: file.clone(),
            source,
        })?;
        Self::from_csv_bytes(&text, &file, columns)
    }

    /// Parses CSV bytes; `file` is used in error messages.
    pub fn from_csv_bytes(text: &[u8], file: &str, columns: &Columns) -> Result<Trace, InputError> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(text);
        let headers = rdr
            .headers()
            .map_err(|e| InputError::File {
                file: file.into(),
                message: format!("cannot read the header line: {e}"),
            })?
            .clone();
        let names: Vec<String> = headers.iter().map(|h| h.trim().to_string()).collect();
        let find = |wanted: &str| names.iter().position(|n| n == wanted);
        let missing = |field: &str| InputError::Field {
            file: file.into(),
            line: 1,
            field: field.into(),
            message: format!(
                "missing column (header has {}); name it with --time-column/--requests-column",
                names.join(",")
            ),
        };
        let time_idx = match &columns.time {
            Some(c) => find(c).ok_or_else(|| missing(c))?,
            None => find("timestamp")
                .or_else(|| {
                    names.iter().position(|n| {
                        let n = n.to_ascii_lowercase();
                        n.contains("time") || n.contains("second") || n.contains("minute")
                    })
                })
                .ok_or_else(|| missing("timestamp"))?,
        };
        let req_name = columns
            .requests
            .clone()
            .unwrap_or_else(|| "requests".into());
        let req_idx = find(&req_name).ok_or_else(|| missing(&req_name))?;
        let mut rows: Vec<(f64, f64)> = Vec::new();
        for rec in rdr.records() {
            let rec = rec.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                InputError::Field {
                    file: file.into(),
                    line,
                    field: "(row)".into(),
                    message: format!("malformed CSV line: {e}"),
                }
            })?;
            let line = rec.position().map_or(0, |p| p.line());
            let field_err = |idx: usize, message: String| InputError::Field {
                file: file.into(),
                line,
                field: names[idx].clone(),
                message,
            };
            let ts_raw = rec.get(time_idx).unwrap_or("");
            let ts = parse_timestamp(ts_raw).ok_or_else(|| {
                field_err(
                    time_idx,
                    format!("{ts_raw:?} is not a timestamp (expected YYYY-MM-DD HH:MM[:SS] or epoch seconds)"),
                )
            })?;
            let req_raw = rec.get(req_idx).unwrap_or("");
            let req: f64 = req_raw
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| {
                    field_err(req_idx, format!("{req_raw:?} is not a non-negative number"))
                })?;
            if let Some(&(prev, _)) = rows.last() {
                if ts <= prev {
                    return Err(field_err(
                        time_idx,
                        format!(
                            "timestamps must increase: {ts_raw:?} is not after the previous row"
                        ),
                    ));
                }
            }
            rows.push((ts, req));
        }
        if rows.is_empty() {
            return Err(InputError::File {
                file: file.into(),
                message: "no data rows".into(),
            });
        }
        let mut gaps: Vec<u64> = rows
            .windows(2)
            .map(|w| (w[1].0 - w[0].0).round().max(1.0) as u64)
            .collect();
        gaps.sort_unstable();
        // The most common gap (the smallest on ties) is the resolution.
        let mut resolution_s = gaps.first().copied().unwrap_or(1);
        let mut best = 0;
        for chunk in gaps.chunk_by(|a, b| a == b) {
            if chunk.len() > best {
                best = chunk.len();
                resolution_s = chunk[0];
            }
        }
        let resolution_s = resolution_s.max(1);
        let t0 = rows[0].0;
        let last = rows[rows.len() - 1].0;
        let duration = ((last - t0).round() as u64 + resolution_s) as usize;
        let mut rps = vec![0.0; duration];
        for &(t, req) in &rows {
            let start = (t - t0).round() as usize;
            let per_s = req / resolution_s as f64;
            for v in rps.iter_mut().skip(start).take(resolution_s as usize) {
                *v = per_s;
            }
        }
        Ok(Trace {
            rps,
            resolution_s,
            source: file.into(),
        })
    }

    /// Multiplies every rate by `k`.
    pub fn scaled(mut self, k: f64) -> Trace {
        for v in &mut self.rps {
            *v *= k;
        }
        self
    }

    /// Requests per second at second `s` (0 past the end).
    pub fn at(&self, s: u64) -> f64 {
        self.rps.get(s as usize).copied().unwrap_or(0.0)
    }

    /// Length in seconds.
    pub fn len_s(&self) -> u64 {
        self.rps.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_every_accepted_shape() {
        assert_eq!(parse_timestamp("1970-01-01 00:01"), Some(60.0));
        assert_eq!(parse_timestamp("1970-01-02T00:00:01Z"), Some(86_401.0));
        assert_eq!(parse_timestamp("1998-05-12 06:00"), Some(894_952_800.0));
        assert_eq!(parse_timestamp("1700000000"), Some(1.7e9));
        assert_eq!(parse_timestamp("1998-13-12 06:00"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn per_minute_counts_become_per_second_rates() {
        let csv = b"timestamp,requests\n2020-01-01 00:00,600\n2020-01-01 00:01,1200\n2020-01-01 00:03,60\n";
        let t = Trace::from_csv_bytes(csv, "t.csv", &Columns::default()).unwrap();
        assert_eq!(t.resolution_s, 60);
        assert_eq!(t.len_s(), 240);
        assert_eq!(t.at(0), 10.0);
        assert_eq!(t.at(61), 20.0);
        assert_eq!(t.at(150), 0.0, "a missing minute has no traffic");
        assert_eq!(t.at(239), 1.0);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let bad = b"timestamp,requests\n2020-01-01 00:00,5\n2020-01-01 00:01,lots\n";
        let e = Trace::from_csv_bytes(bad, "x.csv", &Columns::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("x.csv:3: field \"requests\""), "{e}");
        let dec = b"timestamp,requests\n2020-01-01 00:05,5\n2020-01-01 00:01,5\n";
        let e = Trace::from_csv_bytes(dec, "x.csv", &Columns::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.csv:3") && e.contains("increase"), "{e}");
        let nocol = b"when,hits\n1,2\n";
        let e = Trace::from_csv_bytes(nocol, "x.csv", &Columns::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.csv:1") && e.contains("missing column"), "{e}");
    }

    #[test]
    fn points_interpolate_linearly() {
        let t = Trace::from_points(&[(0.0, 100.0), (10.0, 200.0)], 20);
        assert_eq!(t.at(5), 150.0);
        assert_eq!(t.at(15), 200.0);
    }
}
