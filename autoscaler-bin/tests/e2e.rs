//! End-to-end: the real `autoscaler` binary (static provider creating KWOK nodes) against
//! a real control plane (tests/e2e/controlplane.sh), one control plane for the whole file,
//! scenarios one at a time, each in its own namespace and node group.
//!
//! Run: `cargo test -p autoscaler-bin --test e2e -- --nocapture` (~70 s warm, plus ~12 s
//! for the control plane; a cold `controlplane.sh build` takes ~12 min once per machine).

// The serial lock is held for a whole scenario on purpose (each test has its own runtime).
#![allow(clippy::await_holding_lock)]

mod harness;

use harness::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::time::{Duration, Instant, SystemTime};

fn pdb(name: &str, min_available: i32) -> PodDisruptionBudget {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": name}}}
    }))
    .unwrap()
}

async fn wait_pdb_allowed(client: &kube::Client, ns: &str, name: &str, allowed: i32) {
    let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("PDB {ns}/{name} with disruptionsAllowed={allowed}"),
        Duration::from_secs(30),
        || {
            let api = api.clone();
            async move {
                let p = api.get_opt(name).await.ok().flatten()?;
                let s = p.status?;
                (s.disruptions_allowed == allowed && s.observed_generation == p.metadata.generation)
                    .then_some(())
            }
        },
    )
    .await;
}

/// (a) Pending pods -> scale-up -> KWOK nodes Ready -> pods Running; prints the
/// pod-creation -> scale-up-decision latency (TriggeredScaleUp Event time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_pods_scale_up_to_running() {
    let (cp, _serial) = shared();
    let client = cp.client().await;
    let (ns, group) = ("e2e-a", "static-spot-a");
    namespace(&client, ns).await;
    let mut asc = Autoscaler::start(cp, "a", &base_args(ns, group), &[]);
    // Let it start and settle (reflectors synced) so the latency measures the loop, not
    // the process start.
    tokio::time::sleep(Duration::from_secs(2)).await;
    asc.assert_running();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut created = Vec::new();
    // Two bursts of 6 pods; 600m each: 3 per node, so each burst fills 2 new nodes
    // exactly and no pod of the second burst fits on the first burst's nodes.
    for round in 0..2 {
        for i in 0..6 {
            let name = format!("burst-{round}-{i}");
            created.push((name.clone(), SystemTime::now()));
            pods.create(
                &PostParams::default(),
                &pod(&name, "600m", serde_json::json!({})),
            )
            .await
            .expect("create pod");
        }
        if round == 0 {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }
    // Every pod got its TriggeredScaleUp Event.
    let evs = wait_for(
        "a TriggeredScaleUp Event for each of the 12 pods",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            async move {
                let evs = events(&client, ns, "TriggeredScaleUp").await;
                (evs.len() >= 12).then_some(evs)
            }
        },
    )
    .await;
    let mut latencies: Vec<f64> = created
        .iter()
        .map(|(name, at)| {
            let e = evs
                .iter()
                .find(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
                .unwrap_or_else(|| panic!("no TriggeredScaleUp Event for {name}"));
            let t = e.event_time.as_ref().expect("eventTime").0;
            let at = k8s_openapi::jiff::Timestamp::try_from(*at).unwrap();
            t.duration_since(at).as_secs_f64()
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let p95 = latencies[(latencies.len() * 95).div_ceil(100) - 1];
    println!(
        "scale-up decision latency (pod created -> TriggeredScaleUp), {} pods: min {:.3}s p50 {:.3}s p95 {:.3}s max {:.3}s",
        latencies.len(),
        latencies[0],
        latencies[latencies.len() / 2],
        p95,
        latencies[latencies.len() - 1]
    );
    assert!(p95 <= 2.0, "p95 latency {p95:.3}s > 2s: {latencies:?}");
    // Nodes come, KWOK makes them Ready, the scheduler places every pod, KWOK runs them.
    wait_for("every pod Running", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            let l = pods.list(&Default::default()).await.ok()?.items;
            (l.len() == 12 && l.iter().all(is_running)).then_some(())
        }
    })
    .await;
    let nodes = group_nodes(&client, group).await;
    assert!(
        nodes.len() == 4 && nodes.iter().all(is_ready),
        "12 x 600m pods need 4 Ready nodes of 1930m: {:?}",
        names(&nodes)
    );
    asc.assert_running();
    drop(asc);
    cleanup(&client, ns, group).await;
}

/// (b) --dry-run: TriggeredScaleUp Event and status ConfigMap, but no node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_dry_run_changes_nothing() {
    let (cp, _serial) = shared();
    let client = cp.client().await;
    let (ns, group) = ("e2e-b", "static-spot-b");
    namespace(&client, ns).await;
    let mut args = base_args(ns, group);
    args.push("--dry-run".into());
    let mut asc = Autoscaler::start(cp, "b", &args, &[]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.create(
        &PostParams::default(),
        &pod("dry", "500m", serde_json::json!({})),
    )
    .await
    .expect("create pod");
    let ev = wait_for(
        "a (dry-run) TriggeredScaleUp Event",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            async move {
                events(&client, ns, "TriggeredScaleUp")
                    .await
                    .into_iter()
                    .next()
            }
        },
    )
    .await;
    let note = ev.note.unwrap_or_default();
    assert!(
        note.starts_with("(dry-run)") && note.contains(group),
        "{note}"
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let status = wait_for("the status ConfigMap", Duration::from_secs(10), || {
        let cms = cms.clone();
        async move {
            let cm = cms
                .get_opt("cluster-autoscaler-status")
                .await
                .ok()
                .flatten()?;
            cm.data?.get("status").cloned()
        }
    })
    .await;
    assert!(status.contains("dryRun: true"), "{status}");
    // Several rounds later: still no node, the pod still pending.
    tokio::time::sleep(Duration::from_secs(4)).await;
    asc.assert_running();
    assert!(
        group_nodes(&client, group).await.is_empty(),
        "dry-run created a node"
    );
    let p = pods.get("dry").await.unwrap();
    assert!(node_of(&p).is_none(), "the pod was placed: {p:?}");
    drop(asc);
    cleanup(&client, ns, group).await;
}

/// (c) Scale-down blocked by a PDB and by safe-to-evict=false (node stays, the reason is
/// an Event on the node); then the empty node is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_scale_down_blocked_then_empty_node_removed() {
    let (cp, _serial) = shared();
    let client = cp.client().await;
    let (ns, group) = ("e2e-c", "static-spot-c");
    namespace(&client, ns).await;
    let mut asc = Autoscaler::start(cp, "c", &base_args(ns, group), &[]);
    let deps: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    pdbs.create(&PostParams::default(), &pdb("guarded", 1))
        .await
        .unwrap();
    deps.create(
        &PostParams::default(),
        &deployment("guarded", 1, "100m", serde_json::json!({})),
    )
    .await
    .unwrap();
    let node = wait_for(
        "the guarded pod Running on a new node",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            async move {
                let p = app_pods(&client, ns, "guarded").await.into_iter().next()?;
                is_running(&p).then(|| node_of(&p)).flatten()
            }
        },
    )
    .await;
    wait_pdb_allowed(&client, ns, "guarded", 0).await;
    let blocked = |needle: &'static str| {
        let client = client.clone();
        let node = node.clone();
        async move {
            events(&client, "default", "ScaleDownBlocked")
                .await
                .into_iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(&node))
                .filter_map(|e| e.note)
                .find(|n| n.contains(needle))
        }
    };
    let why = wait_for(
        "ScaleDownBlocked naming the PDB",
        Duration::from_secs(20),
        || blocked("PDB e2e-c/guarded"),
    )
    .await;
    println!("blocked: {why}");
    // A pod that must not be evicted joins; then the PDB'd one goes.
    deps.create(
        &PostParams::default(),
        &deployment(
            "pinned",
            1,
            "100m",
            serde_json::json!({"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}),
        ),
    )
    .await
    .unwrap();
    wait_for("the pinned pod Running", Duration::from_secs(30), || {
        let client = client.clone();
        async move {
            let p = app_pods(&client, ns, "pinned").await.into_iter().next()?;
            is_running(&p).then_some(())
        }
    })
    .await;
    // Past the unneeded time (5s) with the PDB: the node stays.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        names(&group_nodes(&client, group).await),
        vec![node.clone()]
    );
    deps.delete("guarded", &Default::default()).await.unwrap();
    let why = wait_for(
        "ScaleDownBlocked naming safe-to-evict",
        Duration::from_secs(20),
        || blocked("safe-to-evict=false"),
    )
    .await;
    println!("blocked: {why}");
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        names(&group_nodes(&client, group).await),
        vec![node.clone()]
    );
    // Empty: removed after the unneeded time.
    deps.delete("pinned", &Default::default()).await.unwrap();
    let t0 = Instant::now();
    wait_for("the empty node removed", Duration::from_secs(40), || {
        let client = client.clone();
        async move { group_nodes(&client, group).await.is_empty().then_some(()) }
    })
    .await;
    println!(
        "empty node removed {:.1}s after its last pod went",
        t0.elapsed().as_secs_f64()
    );
    asc.assert_running();
    drop(asc);
    cleanup(&client, ns, group).await;
}

/// (d) Two replicas with leader election: only the leader acts; kill it, the standby
/// takes over within the lease duration and acts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_leader_election_failover() {
    let (cp, _serial) = shared();
    let client = cp.client().await;
    let (ns, group) = ("e2e-d", "static-spot-d");
    namespace(&client, ns).await;
    let lease_duration = Duration::from_secs(4);
    let mut args: Vec<String> = base_args(ns, group)
        .into_iter()
        .filter(|a| a != "--leader-elect=false")
        .collect();
    args.extend([
        "--leader-elect=true".into(),
        "--leader-elect-lease-duration=4s".into(),
        "--leader-elect-renew-deadline=3s".into(),
        "--leader-elect-retry-period=1s".into(),
    ]);
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let holder = || {
        let leases = leases.clone();
        async move {
            leases
                .get_opt("cluster-autoscaler")
                .await
                .ok()
                .flatten()
                .and_then(|l| l.spec?.holder_identity)
        }
    };
    let mut a = Autoscaler::start(cp, "d-a", &args, &[("POD_NAME", "replica-a")]);
    wait_for(
        "replica-a holding the Lease",
        Duration::from_secs(20),
        || async { holder().await.filter(|h| h.starts_with("replica-a")) },
    )
    .await;
    let mut b = Autoscaler::start(cp, "d-b", &args, &[("POD_NAME", "replica-b")]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    b.assert_running();
    // 1500m: one pod per node. Were both acting, each would launch its own node.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.create(
        &PostParams::default(),
        &pod("one", "1500m", serde_json::json!({})),
    )
    .await
    .unwrap();
    wait_for("pod one Running", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move { pods.get("one").await.ok().filter(is_running).map(|_| ()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        group_nodes(&client, group).await.len(),
        1,
        "only the leader may launch nodes"
    );
    // Kill the leader; the standby must take the Lease once it expires.
    a.kill();
    let t0 = Instant::now();
    wait_for(
        "replica-b holding the Lease",
        Duration::from_secs(30),
        || async { holder().await.filter(|h| h.starts_with("replica-b")) },
    )
    .await;
    let takeover = t0.elapsed();
    println!(
        "leader failover: standby took the Lease {:.2}s after the leader was killed (lease duration {}s)",
        takeover.as_secs_f64(),
        lease_duration.as_secs()
    );
    assert!(
        takeover <= lease_duration + Duration::from_secs(2),
        "takeover took {takeover:?}"
    );
    // The new leader acts, on top of the node the old one launched.
    pods.create(
        &PostParams::default(),
        &pod("two", "1500m", serde_json::json!({})),
    )
    .await
    .unwrap();
    wait_for("pod two Running", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move { pods.get("two").await.ok().filter(is_running).map(|_| ()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(group_nodes(&client, group).await.len(), 2);
    b.assert_running();
    drop((a, b));
    cleanup(&client, ns, group).await;
}

/// One `app` pod behind a PDB that allows no disruption, Running on a node that AWS
/// then announces going (static provider: an annotation): the autoscaler drains it at
/// once, whatever the PDB says, and the eviction is refused (429) and retried. Returns
/// the node once it carries `ToBeDeletedByClusterAutoscaler`.
async fn pdb_held_pod_on_an_interrupted_node(client: &kube::Client, ns: &str) -> String {
    let deps: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    pdbs.create(&PostParams::default(), &pdb("app", 1))
        .await
        .unwrap();
    deps.create(
        &PostParams::default(),
        &deployment("app", 1, "100m", serde_json::json!({})),
    )
    .await
    .unwrap();
    let node = wait_for(
        "the app pod Running on a new node",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            async move {
                let p = app_pods(&client, ns, "app").await.into_iter().next()?;
                is_running(&p).then(|| node_of(&p)).flatten()
            }
        },
    )
    .await;
    wait_pdb_allowed(client, ns, "app", 0).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = serde_json::json!({"metadata": {"annotations": {
        autoscaler_bin::kwok::INTERRUPTION_ANNOTATION: "scheduled-change"}}});
    nodes
        .patch(&node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_for(
        "the node tainted ToBeDeletedByClusterAutoscaler",
        Duration::from_secs(20),
        || {
            let nodes = nodes.clone();
            let node = node.clone();
            async move {
                let n = nodes.get_opt(&node).await.ok().flatten()?;
                autoscaler_bin::drain::has_taint(&n, autoscaler_bin::drain::TO_BE_DELETED_TAINT)
                    .then_some(())
            }
        },
    )
    .await;
    node
}

/// (e) A drain blocked by a PDB survives a crash: kill the binary mid-drain, relax the
/// PDB, restart: the drain resumes, the node goes, the pod runs elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_restart_mid_drain_resumes() {
    let (cp, _serial) = shared();
    let client = cp.client().await;
    let (ns, group) = ("e2e-e", "static-spot-e");
    namespace(&client, ns).await;
    let args = base_args(ns, group);
    let mut asc = Autoscaler::start(cp, "e", &args, &[]);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let nodes: Api<Node> = Api::all(client.clone());
    let node = pdb_held_pod_on_an_interrupted_node(&client, ns).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pods = app_pods(&client, ns, "app").await;
    assert!(
        pods.len() == 1 && node_of(&pods[0]).as_deref() == Some(node.as_str()),
        "the PDB must hold the pod on the node while the first process drains"
    );
    asc.assert_running();
    asc.kill();
    // Relax the PDB while nobody drains; then restart.
    pdbs.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(&serde_json::json!({"spec": {"minAvailable": 0}})),
    )
    .await
    .unwrap();
    wait_pdb_allowed(&client, ns, "app", 1).await;
    let n = nodes.get(&node).await.unwrap();
    assert!(
        autoscaler_bin::drain::has_taint(&n, autoscaler_bin::drain::TO_BE_DELETED_TAINT),
        "the taint is the durable record of the drain"
    );
    let mut asc = Autoscaler::start(cp, "e-restarted", &args, &[]);
    wait_for("the drained node gone", Duration::from_secs(60), || {
        let nodes = nodes.clone();
        let node = node.clone();
        async move {
            nodes
                .get_opt(&node)
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        }
    })
    .await;
    let elsewhere = wait_for(
        "the app pod Running on another node",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            let node = node.clone();
            async move {
                let p = app_pods(&client, ns, "app").await.into_iter().next()?;
                let on = node_of(&p)?;
                (is_running(&p) && on != node).then_some(on)
            }
        },
    )
    .await;
    println!("drain resumed after restart: {node} removed, pod now on {elsewhere}");
    asc.assert_running();
    let log = std::fs::read_to_string(&asc.log).unwrap_or_default();
    assert!(log.contains("resuming the removal"), "{}", asc.tail());
    drop(asc);
    cleanup(&client, ns, group).await;
}

/// (f) Wake on deadlines: with a 10-minute scan interval, the engine's own deadlines
/// drive the rounds. A pending pod wakes a round (scale-up); the scale-up's provision
/// timeout (20 s) wakes the next, which finds the node empty (the pod was deleted);
/// its unneeded time (5 s) wakes the one that removes it. Without deadlines the node
/// would stay until the next scan, 10 minutes later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_engine_deadlines_wake_the_loop() {
    let (cp, _serial) = shared();
    let client = cp.client().await;
    let (ns, group) = ("e2e-f", "static-deadline-f");
    namespace(&client, ns).await;
    let args: Vec<String> = base_args(ns, group)
        .into_iter()
        .map(|a| match a.as_str() {
            "--scan-interval=1s" => "--scan-interval=10m".to_string(),
            "--max-node-provision-time=2m" => "--max-node-provision-time=20s".to_string(),
            _ => a,
        })
        .collect();
    let mut asc = Autoscaler::start(cp, "f", &args, &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    pods.create(
        &PostParams::default(),
        &pod("once", "500m", serde_json::json!({})),
    )
    .await
    .expect("create pod");
    let node = wait_for(
        "the pod Running on a new node",
        Duration::from_secs(30),
        || {
            let pods = pods.clone();
            async move {
                let p = pods.get_opt("once").await.ok()??;
                is_running(&p).then(|| node_of(&p)).flatten()
            }
        },
    )
    .await;
    pods.delete(
        "once",
        &kube::api::DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .expect("delete pod");
    wait_for("the empty node removed", Duration::from_secs(60), || {
        let client = client.clone();
        let node = node.clone();
        async move {
            let n = Api::<Node>::all(client).get_opt(&node).await.ok()?;
            n.is_none().then_some(())
        }
    })
    .await;
    let took = started.elapsed();
    println!(
        "deadlines: pod created -> its empty node removed with a 10 min scan interval: {:.1}s",
        took.as_secs_f64()
    );
    let log = std::fs::read_to_string(&asc.log).unwrap_or_default();
    assert!(
        log.contains("engine deadline reached"),
        "the rounds were not woken by deadlines:\n{}",
        asc.tail()
    );
    asc.assert_running();
    drop(asc);
    cleanup(&client, ns, group).await;
}

/// How long kube-apiserver stays down in (g) and (h): `AUTOSCALER_APISERVER_OUTAGE_SECS`,
/// 30 s by default.
fn apiserver_outage() -> Duration {
    Duration::from_secs(
        std::env::var("AUTOSCALER_APISERVER_OUTAGE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30),
    )
}

/// (g) the control plane (kube-apiserver with its scheduler and controller manager)
/// stopped right after a scale-up decision: the autoscaler survives
/// the outage (watches retry), and once the apiserver is back every pod runs on exactly
/// the nodes the plan asked for (no second scale-up for the same pods, no node leaked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g_apiserver_down_mid_scale_up() {
    let (cp, _serial) = shared();
    let client = cp.client().await;
    let (ns, group) = ("e2e-g", "static-spot-g");
    namespace(&client, ns).await;
    let mut asc = Autoscaler::start(cp, "g", &base_args(ns, group), &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    // 6 x 600m: 3 per node of 1930m, so the plan is 2 nodes.
    for i in 0..6 {
        pods.create(
            &PostParams::default(),
            &pod(&format!("up-{i}"), "600m", serde_json::json!({})),
        )
        .await
        .expect("create pod");
    }
    let log = asc.log.clone();
    wait_for("the scale-up decision", Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        async move { text.contains("ScaleUp {").then_some(()) }
    })
    .await;
    let stopped = cp.stop_apiserver();
    tokio::time::sleep(apiserver_outage()).await;
    asc.assert_running();
    let down = stopped.down_for();
    stopped.start(cp).await;
    let back = Instant::now();
    wait_for("every pod Running", Duration::from_secs(120), || {
        let pods = pods.clone();
        async move {
            let l = pods.list(&Default::default()).await.ok()?.items;
            (l.len() == 6 && l.iter().all(is_running)).then_some(())
        }
    })
    .await;
    // (Most of this is kube-scheduler and KWOK reconnecting after the outage: the
    // nodes the plan asked for exist from before it.)
    println!(
        "apiserver down {:.0}s mid-scale-up -> every pod Running {:.1}s after it came back",
        down.as_secs_f64(),
        back.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let nodes = group_nodes(&client, group).await;
    assert_eq!(
        nodes.len(),
        2,
        "the plan was 2 nodes: {:?}\n{}",
        names(&nodes),
        asc.tail()
    );
    asc.assert_running();
    drop(asc);
    cleanup(&client, ns, group).await;
}

/// (h) the control plane (as in (g)) stopped in the middle of a drain (an interruption notice; the PDB
/// holds the pod so the eviction is being retried): the autoscaler survives, and once
/// the apiserver is back and the PDB allows it, the drain completes in the same process:
/// the node goes, the pod runs on the replacement, and the group keeps one node (no
/// node leaked, no pod lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h_apiserver_down_mid_drain() {
    let (cp, _serial) = shared();
    let client = cp.client().await;
    let (ns, group) = ("e2e-h", "static-spot-h");
    namespace(&client, ns).await;
    // The replacement node stays empty while the eviction waits for the API server; with
    // the base 5 s unneeded time (and no delay after add) the engine would scale it down
    // before the drained pod reaches it (a core issue, reported; CA's default 10 min
    // delay-after-add hides it in practice). 10 minutes keeps this test on the outage.
    let args: Vec<String> = base_args(ns, group)
        .into_iter()
        .map(|a| {
            if a == "--scale-down-unneeded-time=5s" {
                "--scale-down-unneeded-time=10m".to_string()
            } else {
                a
            }
        })
        .collect();
    let mut asc = Autoscaler::start(cp, "h", &args, &[]);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let nodes: Api<Node> = Api::all(client.clone());
    let node = pdb_held_pod_on_an_interrupted_node(&client, ns).await;
    let stopped = cp.stop_apiserver();
    tokio::time::sleep(apiserver_outage()).await;
    asc.assert_running();
    let down = stopped.down_for();
    stopped.start(cp).await;
    let back = Instant::now();
    // Release the drain by deleting the PDB, not by relaxing it: a relaxed PDB only
    // allows the eviction once kube-controller-manager's disruption controller rewrites
    // its status, and after the API server restart that controller once kept failing
    // ("the object has been modified", its cached PDB stale) for the whole 21-minute
    // bound of a fresh-clone CI run. Without a PDB the eviction API needs nobody.
    pdbs.delete("app", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    // A bound, not the figure (printed below).
    wait_for("the drained node gone", Duration::from_secs(420), || {
        let nodes = nodes.clone();
        let node = node.clone();
        async move {
            nodes
                .get_opt(&node)
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        }
    })
    .await;
    let removed = back.elapsed();
    let elsewhere = wait_for(
        "the app pod Running on another node",
        Duration::from_secs(90),
        || {
            let client = client.clone();
            let node = node.clone();
            async move {
                let p = app_pods(&client, ns, "app").await.into_iter().next()?;
                let on = node_of(&p)?;
                (is_running(&p) && on != node).then_some(on)
            }
        },
    )
    .await;
    println!(
        "apiserver down {:.0}s mid-drain -> drain completed (node removed) {:.1}s and pod running on {elsewhere} {:.1}s after it came back",
        down.as_secs_f64(),
        removed.as_secs_f64(),
        back.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let left = group_nodes(&client, group).await;
    assert_eq!(
        names(&left),
        vec![elsewhere],
        "one node left, the pod's\n{}",
        asc.tail()
    );
    asc.assert_running();
    drop(asc);
    cleanup(&client, ns, group).await;
}

/// (r) `--record-dir` records each HPA's settings and the status its controller wrote
/// (no metrics-server here: the test writes the status through the status subresource,
/// as the HPA controller would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_recording_carries_hpa_settings_and_status() {
    use autoscaler_bin::recording::read_lines;
    use autoscaler_core::recording::RecordLine;
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    let (cp, _serial) = shared();
    let client = cp.client().await;
    let (ns, group) = ("e2e-r", "static-spot-r");
    namespace(&client, ns).await;
    let dir = cp.dir.join("recording-r");
    let _ = std::fs::remove_dir_all(&dir);
    let mut args = base_args(ns, group);
    args.push("--dry-run".into());
    args.push(format!("--record-dir={}", dir.display()));
    let mut asc = Autoscaler::start(cp, "r", &args, &[]);
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2, "maxReplicas": 30,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 60}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 120}}
        }
    }))
    .unwrap();
    hpas.create(&PostParams::default(), &hpa)
        .await
        .expect("create HPA");
    let status = serde_json::json!({"status": {
        "currentReplicas": 4, "desiredReplicas": 7,
        "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu",
            "current": {"averageUtilization": 91}}}]
    }});
    hpas.patch_status("web", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("write the HPA status");
    let (def, count) = wait_for(
        "the HPA and its status in the recording",
        Duration::from_secs(30),
        || {
            let dir = dir.clone();
            async move {
                let file = std::fs::read_dir(&dir).ok()?.next()?.ok()?.path();
                let lines = read_lines(&file).ok()?;
                let def = lines.iter().find_map(|l| match l {
                    RecordLine::Hpa(h) if h.settings.namespace == "e2e-r" => Some(h.clone()),
                    _ => None,
                })?;
                let count = lines.iter().rev().find_map(|l| match l {
                    RecordLine::Round(r) => r
                        .hpas
                        .iter()
                        .find(|c| c.id == def.id && c.cpu_utilization.is_some())
                        .copied(),
                    _ => None,
                })?;
                Some((def, count))
            }
        },
    )
    .await;
    let s = &def.settings;
    assert_eq!(
        (s.target_kind.as_str(), s.target_name.as_str()),
        ("Deployment", "web")
    );
    assert_eq!(
        (s.min_replicas, s.max_replicas, s.cpu_target_utilization),
        (2, 30, Some(60))
    );
    let window = s
        .behavior
        .as_ref()
        .map(|b| b.scale_down.stabilization_window_seconds);
    assert_eq!(window, Some(Some(120)));
    assert_eq!(
        (
            count.current_replicas,
            count.desired_replicas,
            count.cpu_utilization
        ),
        (4, 7, Some(91))
    );
    asc.assert_running();
    drop(asc);
    let _ = std::fs::remove_dir_all(&dir);
    cleanup(&client, ns, group).await;
}
