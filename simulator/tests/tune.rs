//! `tune` and `merge`: shards joined give the bytes of the unsharded run; the recommended
//! point, applied to the scenario and run again, meets the objective.

use simulator::replay::Recording;
use simulator::tune::{self, Objective, Question, Vary};
use std::path::Path;

fn question() -> (simulator::scenario::Loaded, Question) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("recordings/e2e-ice");
    let rec = Recording::load(&dir).unwrap().window(None, None).unwrap();
    let (loaded, _) = rec.to_loaded().unwrap();
    let q = Question {
        input: dir.display().to_string(),
        seed: 1,
        vary: vec![
            Vary::parse("hpa-target=40,50,70").unwrap(),
            Vary::parse("ice-cooloff=30s,3m").unwrap(),
            Vary::parse("scale-down-unneeded-time=10s,10m").unwrap(),
        ],
        objective: Objective::parse_all("unserved<=25%").unwrap(),
        minimise: "cost".into(),
    };
    (loaded, q)
}

#[test]
fn shards_merged_are_byte_identical_to_the_unsharded_run() {
    let (loaded, q) = question();
    let whole = tune::run_shard(&loaded, &q, (0, 1), &|| {}).unwrap();
    assert_eq!(whole.points.len(), 12);
    let unsharded = tune::merge(vec![whole]).unwrap().to_json();
    // Three shards, handed to merge out of order and through their JSON files' text.
    let mut parts = Vec::new();
    for i in [2, 0, 1] {
        let s = tune::run_shard(&loaded, &q, (i, 3), &|| {}).unwrap();
        let text = serde_json::to_string_pretty(&s).unwrap();
        parts.push(serde_json::from_str(&text).unwrap());
    }
    let merged = tune::merge(parts).unwrap().to_json();
    assert_eq!(merged, unsharded);
    // A missing shard is refused, naming it.
    let one = tune::run_shard(&loaded, &q, (1, 3), &|| {}).unwrap();
    let err = tune::merge(vec![one]).unwrap_err().to_string();
    assert!(err.contains("shard 0/3 is missing"), "{err}");
}

#[test]
fn the_recommendation_applied_and_run_again_meets_the_objective() {
    let (loaded, q) = question();
    let result = tune::merge(vec![tune::run_shard(&loaded, &q, (0, 1), &|| {}).unwrap()]).unwrap();
    let best = result.best.expect("some point meets unserved<=25%");
    let point = &result.points[best];
    let applied = tune::apply(&loaded, &q.vary, &point.values).unwrap();
    let r = simulator::sim::run(&applied, simulator::PolicyKind::Ours, q.seed, &|_| {});
    assert!(
        r.unserved_request_fraction <= 0.25,
        "{}",
        r.unserved_request_fraction
    );
    assert_eq!(r.cost_usd, point.metrics.cost);
    // Nothing that meets the objective is cheaper.
    for p in &result.points {
        if p.metrics.unserved <= 0.25 {
            assert!(
                p.metrics.cost >= point.metrics.cost,
                "{p:?} beats {point:?}"
            );
        }
    }
    // The frontier holds no dominated point and the recommendation prints its flags.
    assert!(!result.frontier.is_empty());
    let text = result.recommendation();
    assert!(
        text.contains("--ice-cooloff=") && text.contains("--set iceCooloff.initial="),
        "{text}"
    );
    assert!(result.html().contains("<svg"));
}

#[test]
fn bad_vary_and_objective_say_what_to_write() {
    let e = Vary::parse("ice-cooloff").unwrap_err().to_string();
    assert!(e.contains("name=v1,v2"), "{e}");
    let e = Vary::parse("no-such-flag=1").unwrap_err().to_string();
    assert!(e.contains("not a tunable flag"), "{e}");
    let e = Objective::parse_all("latency<=1").unwrap_err().to_string();
    assert!(e.contains("metric<=bound"), "{e}");
    let (loaded, _) = question();
    let e = tune::apply(
        &loaded,
        &[Vary::parse("autoscaler.no_such_field=1").unwrap()],
        &["1".into()],
    )
    .expect_err("unknown field refused")
    .to_string();
    assert!(e.contains("no_such_field"), "{e}");
}
