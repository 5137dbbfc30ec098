//! Issue 18: the `zonal-placement` built-in (a zone-anti-affine cache, a host-anti-affine
//! queue and an ingester pinned to one zone, all on multi-zone ASGs, demand tripling and
//! falling back). The simulated kube-scheduler honours both constraints, the core plans
//! with them, and `ours` never buys a node that stays empty.

use simulator::scenario::{Loaded, Scenario};
use simulator::{run_policies, PolicyKind, PolicyReport, Report};

fn load() -> Loaded {
    let (sc, path) = Scenario::load("zonal-placement").expect("built-in scenario parses");
    sc.resolve(path.as_deref(), None)
        .expect("built-in scenario resolves")
}

fn run() -> Report {
    run_seeded(None)
}

fn run_seeded(seed: Option<u64>) -> Report {
    run_policies(
        &load(),
        &[PolicyKind::Ours, PolicyKind::Ca133, PolicyKind::Ca130],
        seed,
        &|_| {},
    )
}

fn policy<'a>(r: &'a Report, name: &str) -> &'a PolicyReport {
    &r.policies[name]
}

/// Pods pending in the samples from `from_s` on.
fn pending_from(p: &PolicyReport, from_s: u64) -> Vec<(u64, u32)> {
    p.series
        .iter()
        .filter(|s| s.t_s >= from_s && s.pending_pods > 0)
        .map(|s| (s.t_s, s.pending_pods))
        .collect()
}

#[test]
fn ours_launches_no_more_nodes_that_stay_empty_than_ca_and_places_every_pod() {
    let r = run();
    let (ours, ca) = (policy(&r, "ours"), policy(&r, "ca-1.33"));
    assert!(ours.warnings.is_empty(), "{:?}", ours.warnings);
    assert!(
        ours.decisions.iter().any(|d| d.kind == "ScaleUp"),
        "the peak must need new nodes"
    );
    // To reach a zone the ASG fills last, the nodes AWS puts in the other zones first
    // come too; they may stay empty, like CA's wrong-zone guesses.
    assert!(
        ours.always_empty_nodes <= ca.always_empty_nodes,
        "ours launched {} nodes that never held a pod, ca-1.33 {}",
        ours.always_empty_nodes,
        ca.always_empty_nodes
    );
    // Every pod, pinned and anti-affine ones included, has a node once the peak is over
    // (the trace is back at its base from 9000 s): none pending in the last hour.
    assert_eq!(pending_from(ours, 10_800), vec![], "ours left pods pending");
}

/// CA's template node of a multi-zone ASG carries one zone (a live node's, else the ASG's
/// first): it scales up for pinned and anti-affine pods that the node AWS then launches
/// elsewhere cannot take. Stated as measured with seed 2: both versions buy such nodes
/// (with the scenario's seed 1 the faithful scale-down keeps enough nodes through the
/// peak that CA buys none).
#[test]
fn ca_buys_nodes_that_stay_empty_where_its_template_zone_is_wrong() {
    let r = run_seeded(Some(2));
    for name in ["ca-1.33", "ca-1.30"] {
        let ca = policy(&r, name);
        assert!(ca.warnings.is_empty(), "{name}: {:?}", ca.warnings);
        assert!(
            ca.always_empty_nodes > 0,
            "{name}: expected CA's one-zone template to buy useless nodes"
        );
        assert_eq!(pending_from(ca, 10_800), vec![], "{name} left pods pending");
    }
}

/// When a multi-zone group holds the same number of instances in several zones, AWS's
/// pick among them is unknown: a pod pinned to one zone (or kept out of zones by
/// anti-affinity) that nothing guaranteed can serve gets, as a last resort, a node
/// assumed in its zone, or the nodes up to the first that AWS's order puts there
/// (`ZoneGuess::LastResort`). It used to wait until the counts differed, through the
/// whole peak here.
#[test]
fn ours_places_pinned_pods_on_a_zone_balanced_group_as_fast_as_ca() {
    let r = run();
    let (ours, ca) = (policy(&r, "ours"), policy(&r, "ca-1.33"));
    assert!(
        ours.pending_pod_seconds <= ca.pending_pod_seconds,
        "ours {} pending pod-s vs ca-1.33 {}",
        ours.pending_pod_seconds,
        ca.pending_pod_seconds
    );
}

#[test]
fn the_scenario_rejects_constraints_that_name_nothing() {
    let yaml = simulator::scenario::BUILTINS
        .iter()
        .find(|(n, _)| *n == "zonal-placement")
        .unwrap()
        .1;
    let bad_zone = yaml.replace("zones: [eu-west-1a]\n", "zones: [eu-west-1z]\n");
    let err = Scenario::from_yaml(&bad_zone, "z.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("services.ingest-1a.zones") && err.contains("eu-west-1z"),
        "{err}"
    );
    let bad_key = yaml.replace(
        "topology_key: kubernetes.io/hostname",
        "topology_key: example.com/rack",
    );
    let err = Scenario::from_yaml(&bad_key, "k.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("services.queue.anti_affinity") && err.contains("example.com/rack"),
        "{err}"
    );
}
