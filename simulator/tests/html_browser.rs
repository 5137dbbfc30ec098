//! The HTML report in a real headless browser (Debian's `chromium`): no console
//! message, no script or resource error, and every chart laid out with a non-zero size.
//!
//! The report itself has no script. The test loads a copy with a probe injected at the
//! top of `<head>`: it records errors (`error` events, resource load failures,
//! `console.error`) and, on `load`, measures every chart's `<svg>` and writes the
//! result into `document.title`, which `--dump-dom` then prints.
//!
//! chromium must be installed (`apt-get update && apt-get install -y chromium`); the
//! test fails without it, it never skips. `CHROMIUM=/path/to/binary` overrides the
//! binary.

use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALL: &str = "apt-get update && apt-get install -y chromium";

const PROBE: &str = r#"<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  window.__errors.push(String(e.message || (t && (t.src || t.href)) || 'error event'));
}, true);
(function () {
  var orig = console.error;
  console.error = function () {
    window.__errors.push(Array.prototype.join.call(arguments, ' '));
    orig.apply(console, arguments);
  };
})();
window.addEventListener('load', function () {
  var charts = [].map.call(document.querySelectorAll('figure.chart svg'), function (s) {
    var r = s.getBoundingClientRect();
    return { w: Math.round(r.width), h: Math.round(r.height), lines: s.querySelectorAll('polyline').length };
  });
  document.title = 'PROBE' + JSON.stringify({ charts: charts, errors: window.__errors });
});
</script>"#;

fn chromium() -> PathBuf {
    let candidate = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("chromium"));
    let found = Command::new(&candidate)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "chromium not found ({}): install it with `{INSTALL}` (or set CHROMIUM=/path/to/chromium); \
         this test never skips",
        candidate.display()
    );
    candidate
}

fn tmp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("autoscaler-sim-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Probe {
    charts: Vec<(f64, f64, u64)>,
    errors: Vec<String>,
    stderr: String,
}

fn load_in_chromium(page: &Path, profile: &Path) -> Probe {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--window-size=1200,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "chromium failed: {stderr}");
    let title = dom
        .split("<title>PROBE")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
        .unwrap_or_else(|| {
            panic!(
                "the probe did not run; DOM starts {:?}\nstderr: {stderr}",
                &dom[..dom.len().min(400)]
            )
        });
    // The title is HTML-escaped in the dumped DOM.
    let json = title
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let v: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    Probe {
        charts: v["charts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["w"].as_f64().unwrap(),
                    c["h"].as_f64().unwrap(),
                    c["lines"].as_u64().unwrap(),
                )
            })
            .collect(),
        errors: v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.to_string())
            .collect(),
        stderr,
    }
}

fn render_and_probe(scenario: &str, dir: &Path) -> Probe {
    let html = dir.join(format!("{scenario}.html"));
    let o = Command::new(env!("CARGO_BIN_EXE_autoscaler-sim"))
        .args(["run", "--scenario", scenario, "--html"])
        .arg(&html)
        .output()
        .expect("the binary runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains("<script"), "the report itself has no script");
    let probed = page.replacen("<head>", &format!("<head>{PROBE}"), 1);
    assert_ne!(probed, page, "no <head> to inject the probe into");
    let probe_page = dir.join(format!("{scenario}-probe.html"));
    std::fs::write(&probe_page, probed).unwrap();
    load_in_chromium(&probe_page, &dir.join(format!("profile-{scenario}")))
}

#[test]
fn html_report_renders_in_headless_chromium_without_errors() {
    let dir = tmp_dir();
    for scenario in ["breaking-news", "tv-peak-ice"] {
        let p = render_and_probe(scenario, &dir);
        assert!(
            p.errors.is_empty(),
            "{scenario}: page errors {:?}",
            p.errors
        );
        let console: Vec<&str> = p
            .stderr
            .lines()
            .filter(|l| l.contains(":CONSOLE"))
            .collect();
        assert!(
            console.is_empty(),
            "{scenario}: console messages {console:?}"
        );
        assert_eq!(p.charts.len(), 4, "{scenario}: four charts {:?}", p.charts);
        for (i, &(w, h, lines)) in p.charts.iter().enumerate() {
            assert!(w > 100.0 && h > 50.0, "{scenario}: chart {i} is {w}x{h}");
            assert!(lines > 0, "{scenario}: chart {i} has no line");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_probe_catches_errors() {
    // A page with a script error and a missing image must be reported, so a silent
    // probe cannot pass the test above by accident.
    let dir = tmp_dir().join("negative");
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("bad.html");
    std::fs::write(
        &page,
        format!(
            "<!DOCTYPE html><html><head>{PROBE}<title>x</title></head><body>\
             <figure class=\"chart\"><svg width=\"0\" height=\"0\"></svg></figure>\
             <img src=\"missing.png\"><script>undefinedFunction();</script></body></html>"
        ),
    )
    .unwrap();
    let p = load_in_chromium(&page, &dir.join("profile"));
    assert!(p.errors.len() >= 2, "{:?}", p.errors);
    assert_eq!(p.charts, vec![(0.0, 0.0, 0)]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Counts what the tune page draws: one circle per grid point plus the recommendation's
/// ring, each laid out inside a non-empty chart.
const TUNE_PROBE: &str = r#"<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message || 'error event')); }, true);
window.addEventListener('load', function () {
  var s = document.querySelector('svg');
  var r = s ? s.getBoundingClientRect() : { width: 0, height: 0 };
  var inside = [].filter.call(document.querySelectorAll('svg circle'), function (c) {
    var b = c.getBoundingClientRect();
    return b.width > 0 && b.left >= r.left && b.right <= r.right && b.top >= r.top && b.bottom <= r.bottom;
  }).length;
  var ring = document.querySelectorAll('svg circle[stroke]').length;
  document.title = 'PROBE' + JSON.stringify({ charts: [{ w: Math.round(r.width), h: Math.round(r.height), lines: inside }], errors: window.__errors, ring: ring });
});
</script>"#;

#[test]
fn tune_frontier_renders_in_headless_chromium() {
    let dir = tmp_dir().join("tune");
    std::fs::create_dir_all(&dir).unwrap();
    let recording = Path::new(env!("CARGO_MANIFEST_DIR")).join("recordings/e2e-ice");
    let html = dir.join("tune.html");
    let o = Command::new(env!("CARGO_BIN_EXE_autoscaler-sim"))
        .args(["tune", "--recording"])
        .arg(&recording)
        .args([
            "--vary",
            "hpa-target=40,50,70",
            "--vary",
            "ice-cooloff=30s,3m",
            "--objective",
            "unserved<=25%",
            "--html",
        ])
        .arg(&html)
        .output()
        .expect("the binary runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains("<script"), "the page itself has no script");
    let probed = page.replacen("<head>", &format!("<head>{TUNE_PROBE}"), 1);
    assert_ne!(probed, page, "no <head> to inject the probe into");
    let probe_page = dir.join("tune-probe.html");
    std::fs::write(&probe_page, probed).unwrap();
    let p = load_in_chromium(&probe_page, &dir.join("profile"));
    assert!(p.errors.is_empty(), "page errors {:?}", p.errors);
    let (w, h, circles) = p.charts[0];
    assert!(w > 300.0 && h > 200.0, "the chart is {w}x{h}");
    // Six grid points, each a visible circle inside the chart, plus the recommendation's
    // ring (the objective is met by at least one point).
    assert_eq!(circles, 7, "circles drawn inside the chart");
    let _ = std::fs::remove_dir_all(&dir);
}
