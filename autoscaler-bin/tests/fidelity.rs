//! Differential test (issue 18): the core's fit checks against the real kube-scheduler.
//!
//! proptest generates small clusters (nodes with zones, a custom rack label, taints,
//! cordons, pod slots; running pods with anti-affinity and host ports) and one pending
//! pod using the features the core models (requests with init containers and sidecars,
//! nodeSelector, node affinity matchFields, tolerations with tolerationSeconds, pod
//! affinity and anti-affinity on zone/hostname/rack, topology spread, host ports). Each
//! case gets its own namespace and nodes in the e2e control plane (KWOK nodes, the real
//! kube-scheduler); the pending pod only selects its case's nodes. Two questions:
//!
//! 1. existing nodes: the scheduler binds the pod to X (the core must find X feasible)
//!    or leaves it Unschedulable (the core must find no node);
//! 2. a new node: the same pod, selecting only an empty "fresh" node, is bound there or
//!    not; the core, given a node group whose template is that node's shape (and no
//!    such node), must scale it up exactly when the scheduler bound the pod.
//!
//! Every disagreement fails the test, is shrunk (proptest's value tree, each step
//! re-run in the cluster) and saved under `tests/fidelity-regressions/`, which is
//! replayed first on every run. `FIDELITY_CASES` sets the number of cases (200 by
//! default), `FIDELITY_SEED` the seed, `FIDELITY_PARALLEL` the cases in flight.

// The harness's serial lock is held on purpose for the whole test (one test per binary).
#![allow(clippy::await_holding_lock)]

mod harness;

use autoscaler_bin::translate;
use autoscaler_core::model::{CAPACITY_TYPE_LABEL, INSTANCE_TYPE_LABEL, ZONE_LABEL};
use autoscaler_core::predicates::fit_on_nodes;
use autoscaler_core::{
    Autoscaler, AutoscalerConfig, CapacityType, ClusterSnapshot, InstanceType, NodeGroup,
    NodeTemplate, PodVerdict, SnapshotParts, Timestamp,
};
use harness::{shared, wait_for};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::Client;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CASE_LABEL: &str = "fidelity.spot-autoscaler/case";
const POOL_LABEL: &str = "fidelity.spot-autoscaler/pool";
const RACK_LABEL: &str = "example.com/rack";
const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];
const KEYS: [&str; 3] = [ZONE_LABEL, "kubernetes.io/hostname", RACK_LABEL];
const FRESH_TYPE: &str = "fidelity.large";

/// A node of a case.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct NodeSpec {
    /// Index into ZONES, or none (no zone label).
    zone: Option<usize>,
    rack: Option<u8>,
    cpu_millis: u32,
    pod_slots: u8,
    /// `dedicated=<value>` with the effect index (0 NoSchedule, 1 NoExecute, 2 Prefer).
    taint: Option<(u8, u8)>,
    cordoned: bool,
}

/// A pod of a case (running ones carry `node`).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PodSpec {
    app: u8,
    cpu_millis: u32,
    /// A plain init container's request.
    init_cpu: Option<u32>,
    /// A sidecar (restartable init container) request.
    sidecar_cpu: Option<u32>,
    zone_selector: Option<usize>,
    /// matchFields metadata.name: (node index, In?).
    name_field: Option<(usize, bool)>,
    /// Toleration of `dedicated`: (value or Exists, effect or any, tolerationSeconds).
    toleration: Option<(Option<u8>, Option<u8>, Option<i64>)>,
    /// (app, key index).
    anti: Option<(u8, usize)>,
    affinity: Option<(u8, usize)>,
    /// (app, key index, maxSkew).
    spread: Option<(u8, usize, i32)>,
    host_port: Option<u16>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Case {
    nodes: Vec<NodeSpec>,
    fresh: NodeSpec,
    running: Vec<(usize, PodSpec)>,
    pending: PodSpec,
}

/// `Some` with probability `p` (never when `p` is 0: running pods skip pending-only features).
fn maybe<S: Strategy + 'static>(p: f64, s: S) -> BoxedStrategy<Option<S::Value>>
where
    S::Value: Clone + std::fmt::Debug,
{
    if p <= 0.0 {
        Just(None).boxed()
    } else {
        proptest::option::weighted(p, s).boxed()
    }
}

fn node_spec(zoned: bool) -> impl Strategy<Value = NodeSpec> {
    (
        if zoned {
            (0..ZONES.len()).prop_map(Some).boxed()
        } else {
            maybe(0.85, 0..ZONES.len()).boxed()
        },
        proptest::option::of(0u8..2),
        (2u32..9).prop_map(|c| c * 500),
        2u8..6,
        maybe(0.3, (0u8..2, 0u8..3)),
        proptest::bool::weighted(0.1),
    )
        .prop_map(
            |(zone, rack, cpu_millis, pod_slots, taint, cordoned)| NodeSpec {
                zone,
                rack,
                cpu_millis,
                pod_slots,
                taint,
                cordoned,
            },
        )
}

fn pod_spec(nodes: usize, pending: bool) -> impl Strategy<Value = PodSpec> {
    let rare = if pending { 0.3 } else { 0.15 };
    (
        (0u8..3, (1u32..10).prop_map(|c| c * 200)),
        maybe(rare, (1u32..12).prop_map(|c| c * 200)),
        maybe(rare, (1u32..5).prop_map(|c| c * 100)),
        maybe(if pending { 0.25 } else { 0.0 }, 0..ZONES.len()),
        maybe(if pending { 0.2 } else { 0.0 }, (0..nodes, any::<bool>())),
        maybe(
            if pending { 0.4 } else { 0.0 },
            (
                proptest::option::of(0u8..2),
                proptest::option::of(0u8..3),
                maybe(0.3, 1i64..600),
            ),
        ),
        maybe(rare, (0u8..3, 0..KEYS.len())),
        maybe(if pending { 0.3 } else { 0.0 }, (0u8..3, 0..KEYS.len())),
        maybe(
            if pending { 0.35 } else { 0.0 },
            (0u8..3, 0..KEYS.len(), 1i32..3),
        ),
        maybe(rare, 8080u16..8082),
    )
        .prop_map(
            |(
                (app, cpu_millis),
                init_cpu,
                sidecar_cpu,
                zone_selector,
                name_field,
                toleration,
                anti,
                affinity,
                spread,
                host_port,
            )| PodSpec {
                app,
                cpu_millis,
                init_cpu,
                sidecar_cpu,
                zone_selector,
                name_field,
                toleration,
                anti,
                affinity,
                spread,
                host_port,
            },
        )
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..5).prop_flat_map(|n| {
        (
            proptest::collection::vec(node_spec(false), n),
            node_spec(true),
            proptest::collection::vec((0..n, pod_spec(n, false)), 0..6),
            pod_spec(n, true),
        )
            .prop_map(|(nodes, fresh, running, pending)| Case {
                nodes,
                fresh: NodeSpec {
                    cordoned: false,
                    ..fresh
                },
                running,
                pending,
            })
    })
}

const EFFECTS: [&str; 3] = ["NoSchedule", "NoExecute", "PreferNoSchedule"];

fn node_object(name: &str, case: &str, pool: &str, n: &NodeSpec) -> Node {
    let mut labels = json!({
        CASE_LABEL: case,
        POOL_LABEL: pool,
        "kubernetes.io/hostname": name,
        "type": "kwok",
        INSTANCE_TYPE_LABEL: FRESH_TYPE,
        CAPACITY_TYPE_LABEL: "on-demand",
    });
    if let Some(z) = n.zone {
        labels[ZONE_LABEL] = json!(ZONES[z]);
    }
    if let Some(r) = n.rack {
        labels[RACK_LABEL] = json!(format!("rack-{r}"));
    }
    let taints: Vec<_> = n
        .taint
        .iter()
        .map(|(v, e)| json!({"key": "dedicated", "value": format!("v{v}"), "effect": EFFECTS[*e as usize]}))
        .collect();
    let resources = json!({"cpu": format!("{}m", n.cpu_millis), "memory": "8Gi", "pods": n.pod_slots.to_string()});
    serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
        },
        "spec": {"taints": taints, "unschedulable": n.cordoned},
        "status": {"allocatable": resources, "capacity": resources},
    }))
    .expect("node object")
}

fn term(app: u8, key: usize) -> serde_json::Value {
    json!({"labelSelector": {"matchLabels": {"app": format!("app{app}")}}, "topologyKey": KEYS[key]})
}

/// The pod object; `node` binds it directly (a running pod), `pool` restricts a
/// pending one to its case's existing or fresh nodes.
fn pod_object(
    name: &str,
    case: &str,
    p: &PodSpec,
    node: Option<&str>,
    pool: &str,
    node_names: &[String],
) -> Pod {
    let container = |n: &str, cpu: u32| {
        let mut c = json!({"name": n, "image": "fake", "resources": {"requests": {"cpu": format!("{cpu}m")}}});
        if n == "main" {
            if let Some(port) = p.host_port {
                c["ports"] = json!([{"containerPort": port, "hostPort": port}]);
            }
        }
        c
    };
    let mut init = Vec::new();
    if let Some(cpu) = p.sidecar_cpu {
        let mut s = container("sidecar", cpu);
        s["restartPolicy"] = json!("Always");
        init.push(s);
    }
    if let Some(cpu) = p.init_cpu {
        init.push(container("init", cpu));
    }
    let mut spec = json!({
        "containers": [container("main", p.cpu_millis)],
        "initContainers": init,
        "terminationGracePeriodSeconds": 0,
    });
    match node {
        Some(n) => {
            spec["nodeName"] = json!(n);
            // Bound directly; tolerating everything keeps the taint manager from evicting
            // it from a NoExecute node (its own tolerations do not matter to the probe).
            spec["tolerations"] = json!([{"operator": "Exists"}]);
        }
        None => {
            let mut selector = json!({CASE_LABEL: case, POOL_LABEL: pool});
            if let Some(z) = p.zone_selector {
                selector[ZONE_LABEL] = json!(ZONES[z]);
            }
            spec["nodeSelector"] = selector;
        }
    }
    let mut affinity = json!({});
    if let Some((idx, is_in)) = p.name_field {
        affinity["nodeAffinity"] = json!({"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{
                "key": "metadata.name",
                "operator": if is_in { "In" } else { "NotIn" },
                "values": [node_names[idx.min(node_names.len() - 1)]],
            }]}]
        }});
    }
    if let Some((app, key)) = p.anti {
        affinity["podAntiAffinity"] =
            json!({"requiredDuringSchedulingIgnoredDuringExecution": [term(app, key)]});
    }
    if let Some((app, key)) = p.affinity {
        affinity["podAffinity"] =
            json!({"requiredDuringSchedulingIgnoredDuringExecution": [term(app, key)]});
    }
    spec["affinity"] = affinity;
    if let Some((app, key, skew)) = p.spread {
        spec["topologySpreadConstraints"] = json!([{
            "maxSkew": skew, "topologyKey": KEYS[key], "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": format!("app{app}")}},
        }]);
    }
    if let Some((value, effect, seconds)) = p.toleration {
        let mut t = match value {
            Some(v) => json!({"key": "dedicated", "operator": "Equal", "value": format!("v{v}")}),
            None => json!({"key": "dedicated", "operator": "Exists"}),
        };
        if let Some(e) = effect {
            t["effect"] = json!(EFFECTS[e as usize]);
        }
        // tolerationSeconds is only valid with NoExecute.
        if let (Some(s), Some(1)) = (seconds, effect) {
            t["tolerationSeconds"] = json!(s);
        }
        spec["tolerations"] = json!([t]);
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": format!("app{}", p.app)}},
        "spec": spec,
    }))
    .expect("pod object")
}

/// What the scheduler did with a pending pod.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Bound(String),
    Unschedulable,
}

async fn outcome(api: &Api<Pod>, name: &str) -> (Outcome, Pod) {
    wait_for(
        &format!("the scheduler's verdict on {name}"),
        Duration::from_secs(120),
        || async move {
            let p = api.get_opt(name).await.ok().flatten()?;
            if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                return Some((Outcome::Bound(n), p));
            }
            translate::is_unschedulable(&p).then_some((Outcome::Unschedulable, p))
        },
    )
    .await
}

/// One disagreement, in words.
type Disagreement = String;

/// Creates the case in the cluster, asks both questions of the scheduler and the core,
/// cleans up. When they agree on both: whether the scheduler bound each probe.
async fn run_case(client: &Client, id: &str, case: &Case) -> Result<(bool, bool), Disagreement> {
    let ns = format!("fid-{id}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let nodes_api: Api<Node> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("create the case namespace");
    harness::default_service_account(client, &ns).await;
    let names: Vec<String> = (0..case.nodes.len())
        .map(|i| format!("fid-{id}-n{i}"))
        .collect();
    let fresh_name = format!("fid-{id}-fresh");
    let mut node_objects = Vec::new();
    for (name, spec) in names.iter().zip(&case.nodes) {
        node_objects.push(node_object(name, id, "existing", spec));
    }
    let fresh_object = node_object(&fresh_name, id, "fresh", &case.fresh);
    for n in node_objects.iter().chain([&fresh_object]) {
        nodes_api
            .create(&PostParams::default(), n)
            .await
            .expect("create a case node");
    }
    // Wait until KWOK made them Ready and the not-ready taint is gone.
    let selector = format!("{CASE_LABEL}={id}");
    let node_count = names.len() + 1;
    let live_nodes: Vec<Node> = wait_for(
        &format!("case {id}: nodes ready"),
        Duration::from_secs(120),
        || {
            let nodes_api = nodes_api.clone();
            let selector = selector.clone();
            async move {
                let l = nodes_api
                    .list(&ListParams::default().labels(&selector))
                    .await
                    .ok()?;
                let all_ready = l.items.len() == node_count
                    && l.items.iter().all(|n| {
                        harness::is_ready(n)
                            && n.spec
                                .as_ref()
                                .and_then(|s| s.taints.as_ref())
                                .into_iter()
                                .flatten()
                                .all(|t| !translate::CONDITION_TAINTS.contains(&t.key.as_str()))
                    });
                all_ready.then_some(l.items)
            }
        },
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    for (i, (at, p)) in case.running.iter().enumerate() {
        let obj = pod_object(&format!("run-{i}"), id, p, Some(&names[*at]), "", &names);
        pods.create(&PostParams::default(), &obj)
            .await
            .expect("create a running pod");
    }
    if !case.running.is_empty() {
        wait_for(
            &format!("case {id}: running pods Running"),
            Duration::from_secs(120),
            || async {
                let l = pods.list(&ListParams::default()).await.ok()?;
                (l.items.len() == case.running.len() && l.items.iter().all(harness::is_running))
                    .then_some(())
            },
        )
        .await;
        // The scheduler learns about bound pods through its own watch.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let existing_probe = pod_object("probe", id, &case.pending, None, "existing", &names);
    pods.create(&PostParams::default(), &existing_probe)
        .await
        .expect("create the probe");
    let (seen, probe_live) = outcome(&pods, "probe").await;
    let fresh_probe = pod_object("probe-fresh", id, &case.pending, None, "fresh", &names);
    pods.create(&PostParams::default(), &fresh_probe)
        .await
        .expect("create the fresh probe");
    let (seen_fresh, fresh_live) = outcome(&pods, "probe-fresh").await;
    let running_live = pods
        .list(&ListParams::default())
        .await
        .expect("list case pods")
        .items;

    let verdict = compare(
        case,
        &live_nodes,
        &fresh_name,
        &running_live,
        (&seen, &probe_live),
        (&seen_fresh, &fresh_live),
    );

    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    let _ = pods.delete_collection(&now, &ListParams::default()).await;
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    let _ = nodes_api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&selector),
        )
        .await;
    verdict.map(|()| {
        (
            matches!(seen, Outcome::Bound(_)),
            matches!(seen_fresh, Outcome::Bound(_)),
        )
    })
}

fn core_node(n: &Node) -> autoscaler_core::Node {
    translate::node(n, |_| None).expect("case node translates")
}

fn core_pod(p: &Pod) -> autoscaler_core::Pod {
    let mut pod = translate::pod(p)
        .expect("case pod translates")
        .expect("case pod is live");
    pod.created_at = Timestamp::from_secs(0);
    pod
}

/// The core's answers, compared with what the scheduler did.
fn compare(
    case: &Case,
    live_nodes: &[Node],
    fresh_name: &str,
    all_pods: &[Pod],
    (seen, probe): (&Outcome, &Pod),
    (seen_fresh, fresh_probe): (&Outcome, &Pod),
) -> Result<(), Disagreement> {
    let name_of = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
    let running: Vec<autoscaler_core::Pod> = all_pods
        .iter()
        .filter(|p| name_of(p).starts_with("run-"))
        .map(core_pod)
        .collect();
    let nodes: Vec<autoscaler_core::Node> = live_nodes.iter().map(core_node).collect();
    let mut probe_core = core_pod(probe);
    probe_core.node_name = None;

    // 1. Existing nodes (the fresh one included: the probe's selector excludes it).
    let snap = ClusterSnapshot::new(SnapshotParts {
        nodes: nodes.clone(),
        pods: running.iter().cloned().map(Arc::new).collect(),
        ..SnapshotParts::default()
    })
    .map_err(|e| e.to_string())?;
    let fits: Vec<(String, String)> = fit_on_nodes(&snap, &probe_core)
        .into_iter()
        .zip(snap.nodes())
        .map(|(r, n)| {
            (
                n.name.clone(),
                r.err().map(|u| u.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    let feasible: Vec<&str> = fits
        .iter()
        .filter(|(_, why)| why.is_empty())
        .map(|(n, _)| n.as_str())
        .collect();
    let agree = match seen {
        Outcome::Bound(n) => feasible.contains(&n.as_str()),
        Outcome::Unschedulable => feasible.is_empty(),
    };
    if !agree {
        return Err(format!(
            "existing nodes: scheduler {seen:?}, core per node {fits:?}\ncase: {}",
            serde_json::to_string(case).unwrap()
        ));
    }

    // 2. A new node of a group shaped like the fresh node (which is left out).
    let fresh = live_nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(fresh_name))
        .map(core_node)
        .expect("the fresh node");
    let mut template = fresh.labels.clone();
    for key in [
        ZONE_LABEL,
        INSTANCE_TYPE_LABEL,
        "kubernetes.io/hostname",
        CAPACITY_TYPE_LABEL,
    ] {
        template.remove(key);
    }
    let group = NodeGroup {
        name: "fresh".into(),
        min_size: 0,
        max_size: 1,
        target_size: 0,
        current_instances: None,
        zones: vec![fresh.zone().expect("fresh nodes have a zone").to_string()],
        capacity_type: CapacityType::OnDemand,
        mix: None,
        instance_types: vec![InstanceType {
            name: FRESH_TYPE.into(),
            vcpus: 8,
            memory_mib: 8192,
            allocatable: fresh.allocatable.clone(),
            price_per_hour: 1.0,
            on_demand_price_per_hour: None,
        }],
        template: NodeTemplate {
            labels: template,
            taints: fresh.taints.clone(),
        },
        options: Default::default(),
    };
    let mut pods: Vec<Arc<autoscaler_core::Pod>> = running.iter().cloned().map(Arc::new).collect();
    if let Outcome::Bound(_) = seen {
        pods.push(Arc::new(core_pod(probe)));
    }
    let mut fresh_core = core_pod(fresh_probe);
    fresh_core.node_name = None;
    pods.push(Arc::new(fresh_core));
    let snap = ClusterSnapshot::new(SnapshotParts {
        groups: vec![group],
        nodes: nodes.into_iter().filter(|n| n.name != fresh_name).collect(),
        pods,
        ..SnapshotParts::default()
    })
    .map_err(|e| e.to_string())?;
    let d = Autoscaler::new(AutoscalerConfig::default())
        .expect("default config")
        .decide(&snap, Timestamp::from_secs(3600));
    let verdict = d
        .pods
        .iter()
        .find(|o| o.pod.ends_with("/probe-fresh"))
        .map(|o| o.verdict.clone());
    let core_scales = matches!(verdict, Some(PodVerdict::TriggeredScaleUp { .. }));
    let scheduler_binds = *seen_fresh == Outcome::Bound(fresh_name.to_string());
    if core_scales != scheduler_binds {
        return Err(format!(
            "new node: scheduler {seen_fresh:?}, core {verdict:?}\ncase: {}",
            serde_json::to_string(case).unwrap()
        ));
    }
    Ok(())
}

fn regressions_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fidelity-regressions")
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number; unset it or give one")),
        Err(_) => default,
    }
}

/// What a batch of cases gave.
#[derive(Default)]
struct Tally {
    /// Disagreements, by case index.
    failures: Vec<(usize, Disagreement)>,
    /// Agreeing cases where the scheduler bound the probe to an existing / the fresh node.
    bound_existing: usize,
    bound_fresh: usize,
}

/// Runs cases with at most `parallel` in flight.
async fn run_all(client: &Client, run: &str, cases: &[Case], parallel: usize) -> Tally {
    let mut set = tokio::task::JoinSet::new();
    let mut tally = Tally::default();
    let mut next = 0usize;
    type Joined = Result<(usize, Result<(bool, bool), Disagreement>), tokio::task::JoinError>;
    let mut collect = |r: Joined| match r.expect("a case task panicked") {
        (i, Err(d)) => tally.failures.push((i, d)),
        (_, Ok((existing, fresh))) => {
            tally.bound_existing += usize::from(existing);
            tally.bound_fresh += usize::from(fresh);
        }
    };
    while next < cases.len() || !set.is_empty() {
        while next < cases.len() && set.len() < parallel {
            let (client, case, id) = (client.clone(), cases[next].clone(), format!("{run}-{next}"));
            let i = next;
            set.spawn(async move { (i, run_case(&client, &id, &case).await) });
            next += 1;
        }
        if let Some(r) = set.join_next().await {
            collect(r);
        }
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_fit_agrees_with_kube_scheduler() {
    let (cp, _serial) = shared();
    let client = cp.client().await;
    let cases_wanted = env_number("FIDELITY_CASES", 200) as usize;
    let seed = env_number("FIDELITY_SEED", 18);
    let parallel = env_number("FIDELITY_PARALLEL", 24) as usize;
    let started = Instant::now();

    // Saved regressions first.
    let mut saved: Vec<(PathBuf, Case)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir(regressions_dir()) {
        for e in dir.flatten() {
            let text = std::fs::read_to_string(e.path()).expect("read a regression case");
            let case: Case = serde_json::from_str(&text).unwrap_or_else(|err| {
                panic!(
                    "{}: not a fidelity case ({err}); fix or delete it",
                    e.path().display()
                )
            });
            saved.push((e.path(), case));
        }
    }
    let saved_cases: Vec<Case> = saved.iter().map(|(_, c)| c.clone()).collect();
    let failed = run_all(&client, "r", &saved_cases, parallel).await.failures;
    assert!(
        failed.is_empty(),
        "saved regression cases disagree again:\n{}",
        failed
            .iter()
            .map(|(i, d)| format!("{}: {d}", saved[*i].0.display()))
            .collect::<Vec<_>>()
            .join("\n")
    );

    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let strategy = case();
    let mut trees = Vec::with_capacity(cases_wanted);
    for _ in 0..cases_wanted {
        trees.push(strategy.new_tree(&mut runner).expect("generate a case"));
    }
    let cases: Vec<Case> = trees.iter().map(|t| t.current()).collect();
    let tally = run_all(&client, &format!("s{seed}"), &cases, parallel).await;
    let failed = tally.failures;
    let agreed = cases.len() - failed.len();
    eprintln!(
        "fidelity: {agreed}/{} cases agree ({:.2} %; scheduler bound {} to an existing node, \
         {} to the fresh one), seed {seed}, {} saved regressions, {:.0} s",
        cases.len(),
        100.0 * agreed as f64 / cases.len().max(1) as f64,
        tally.bound_existing,
        tally.bound_fresh,
        saved.len(),
        started.elapsed().as_secs_f64()
    );
    // A generator whose pods always (or never) fit would prove little.
    if failed.is_empty() && cases.len() >= 50 {
        for (what, n) in [
            ("an existing node", tally.bound_existing),
            ("the fresh node", tally.bound_fresh),
        ] {
            assert!(
                n > cases.len() / 10 && n < cases.len() * 9 / 10,
                "only {n} of {} probes bound to {what}: the generator needs rebalancing",
                cases.len()
            );
        }
    }
    if let Some((first, why)) = failed.first() {
        // Shrink the first disagreement: simplify while it still disagrees.
        let mut tree = trees.swap_remove(*first);
        let mut smallest = (tree.current(), why.clone());
        let mut steps = 0;
        while steps < 40 && tree.simplify() {
            steps += 1;
            let candidate = tree.current();
            let id = format!("k{seed}-{steps}");
            match run_case(&client, &id, &candidate).await {
                Err(d) => smallest = (candidate, d),
                Ok(_) => {
                    if !tree.complicate() {
                        break;
                    }
                }
            }
        }
        std::fs::create_dir_all(regressions_dir()).expect("create the regressions folder");
        let path = regressions_dir().join(format!("seed-{seed}-case-{first}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&smallest.0).unwrap())
            .expect("save the regression case");
        panic!(
            "{} of {} cases disagree with kube-scheduler; the first, shrunk in {steps} steps, saved to {}:\n{}\nall:\n{}",
            failed.len(),
            cases.len(),
            path.display(),
            smallest.1,
            failed
                .iter()
                .map(|(i, d)| format!("#{i}: {d}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
