//! End-to-end with `--cloud-provider=aws`: the real `autoscaler` binary against a real
//! control plane (tests/e2e/controlplane.sh, shared by this file's tests) and a moto
//! server per test (started here; the test panics when `moto_server` is missing, never
//! skips). AWS events are EventBridge messages sent to the SQS queue of
//! `--event-queue-url`, as a rule's target delivers them.
//!
//! One-zone ASGs are found by CA's auto-discovery tags and ranked by the priority
//! ConfigMap. Where a scenario needs nodes, a registrar task mirrors moto's instances as
//! KWOK Nodes (what kubelets do on EC2) and deletes the Node of an instance moto no
//! longer has.
//!
//! - scale-up, then ICE on the first-priority group -> the next group within seconds;
//! - spot interruption warning -> replacement launched, node drained, instance terminated;
//! - drain-back with a short `--drain-back-after`: spot launched first, then the
//!   on-demand node drained and terminated;
//! - two replicas: only the Lease holder reads the queue, the next holder takes over.
//!
//! moto gap: instances start at once, so at the revert moto has asg-a's instance in
//! service and the adapter (rightly) never sets the desired capacity below the instances
//! AWS has: the revert is asserted from the log (the decision and the adapter's clamped
//! outcome), not from moto's desired capacity.
//!
//! Run: `cargo test -p autoscaler-bin --test aws -- --nocapture` (prints the latencies).

#![allow(clippy::await_holding_lock)]

mod harness;
// The moto server and hermetic SDK configuration of the AWS adapter's own tests.
#[path = "../../autoscaler-aws/tests/common/mod.rs"]
mod moto;

use aws_sdk_autoscaling::types::LaunchTemplateSpecification;
use harness::*;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::ResourceExt;
use moto::{sdk_config, tag, Fault, FaultProxy, Moto, AWS_ENV};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CLUSTER_TAG: &str = "k8s.io/cluster-autoscaler/e2e-aws";
const ENABLED_TAG: &str = "k8s.io/cluster-autoscaler/enabled";
static EVENT_IDS: AtomicU64 = AtomicU64::new(1);

async fn launch_template(ec2: &aws_sdk_ec2::Client, name: &str, spot: bool) -> String {
    use aws_sdk_ec2::types::{
        InstanceType, LaunchTemplateInstanceMarketOptionsRequest, MarketType,
        RequestLaunchTemplateData,
    };
    let mut data = RequestLaunchTemplateData::builder()
        .image_id("ami-12c6146b")
        .instance_type(InstanceType::from("m5.large"));
    if spot {
        data = data.instance_market_options(
            LaunchTemplateInstanceMarketOptionsRequest::builder()
                .market_type(MarketType::Spot)
                .build(),
        );
    }
    ec2.create_launch_template()
        .launch_template_name(name)
        .launch_template_data(data.build())
        .send()
        .await
        .expect("create launch template")
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .expect("launch template id")
        .to_string()
}

async fn desired(asg: &aws_sdk_autoscaling::Client, group: &str) -> i32 {
    asg.describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .expect("describe group")
        .auto_scaling_groups()[0]
        .desired_capacity()
        .unwrap_or(0)
}

async fn wait_desired(asg: &aws_sdk_autoscaling::Client, group: &str, at_least: i32) -> Duration {
    let start = Instant::now();
    loop {
        if desired(asg, group).await >= at_least {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{group}'s desired capacity did not reach {at_least} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn log_text(asc: &harness::Autoscaler) -> String {
    std::fs::read_to_string(&asc.log).unwrap_or_default()
}

/// The AWS side of a scenario: moto with one-zone ASGs found by auto-discovery, the
/// event queue, and the priority ConfigMap in `ns`.
struct World {
    /// Kept for its lifetime (stopped on drop).
    _moto: Moto,
    /// Between the autoscaler and moto: switchable faults (the fixtures' own clients
    /// talk to moto directly).
    proxy: FaultProxy,
    asg: aws_sdk_autoscaling::Client,
    sqs: aws_sdk_sqs::Client,
    subnet: String,
    queue_url: String,
}

/// `groups`: `(name, spot, priority)`.
async fn world(client: &kube::Client, ns: &str, groups: &[(&str, bool, u32)]) -> World {
    let moto = Moto::start();
    let sdk = sdk_config(&moto.endpoint());
    let asg = aws_sdk_autoscaling::Client::new(&sdk);
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let subnet = ec2
        .describe_subnets()
        .send()
        .await
        .expect("subnets")
        .subnets()
        .iter()
        .find(|s| s.availability_zone() == Some("us-east-1a"))
        .and_then(|s| s.subnet_id())
        .expect("a subnet in us-east-1a")
        .to_string();
    let mut priorities = String::new();
    for &(name, spot, priority) in groups {
        let lt = launch_template(&ec2, &format!("lt-{name}"), spot).await;
        asg.create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .min_size(0)
            .max_size(5)
            .desired_capacity(0)
            .vpc_zone_identifier(&subnet)
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(lt)
                    .version("$Latest")
                    .build(),
            )
            .tags(tag(name, ENABLED_TAG, "true"))
            .tags(tag(name, CLUSTER_TAG, "owned"))
            .send()
            .await
            .expect("create group");
        priorities.push_str(&format!("{priority}:\n  - ^{name}$\n"));
    }
    let queue_url = sqs
        .create_queue()
        .queue_name("autoscaler-events")
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_string();
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "cluster-autoscaler-priority-expander"},
        "data": {"priorities": priorities}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &cm)
        .await
        .expect("create priority ConfigMap");
    World {
        proxy: FaultProxy::start(moto.port).await,
        _moto: moto,
        asg,
        sqs,
        subnet,
        queue_url,
    }
}

impl World {
    /// The autoscaler's flags for this world, plus `extra`.
    fn args(&self, ns: &str, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--cloud-provider=aws".to_string(),
            format!("--aws-endpoint-url={}", self.proxy.endpoint()),
            "--aws-region=us-east-1".to_string(),
            format!("--node-group-auto-discovery=asg:tag={ENABLED_TAG},{CLUSTER_TAG}"),
            "--expander=priority".to_string(),
            format!("--event-queue-url={}", self.queue_url),
            format!("--namespace={ns}"),
            "--leader-elect=false".to_string(),
            "--scan-interval=1s".to_string(),
            "--metrics-address=127.0.0.1:0".to_string(),
            "--max-pod-eviction-time=1m".to_string(),
            "--max-graceful-termination-sec=5".to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    async fn start(&self, cp: &'static ControlPlane, ns: &str, extra: &[&str]) -> Autoscaler {
        self.start_as(cp, "aws", ns, extra).await
    }

    /// [`World::start`] with its own log file (`autoscaler-<name>.log`).
    async fn start_as(
        &self,
        cp: &'static ControlPlane,
        name: &str,
        ns: &str,
        extra: &[&str],
    ) -> Autoscaler {
        let mut asc = Autoscaler::start(cp, name, &self.args(ns, extra), &AWS_ENV);
        // Settled: the priorities are loaded and a round saw the groups.
        wait_for(
            "the priority ConfigMap loaded and a first AWS scan",
            Duration::from_secs(30),
            || {
                let text = log_text(&asc);
                async move {
                    (text.contains("priority ConfigMap loaded")
                        && text.contains("consuming the event queue"))
                    .then_some(())
                }
            },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        asc.assert_running();
        asc
    }

    /// Sends one EventBridge event to the queue, as a rule's SQS target delivers it.
    async fn send_event(&self, source: &str, detail_type: &str, detail: serde_json::Value) {
        let body = serde_json::json!({
            "version": "0",
            "id": format!("e2e-{}", EVENT_IDS.fetch_add(1, Ordering::Relaxed)),
            "detail-type": detail_type,
            "source": source,
            "account": "123456789012",
            "time": "2026-11-21T12:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": detail,
        });
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body.to_string())
            .send()
            .await
            .expect("send event to SQS");
    }

    /// An InsufficientInstanceCapacity launch failure of `group` in us-east-1a.
    async fn send_ice(&self, group: &str) {
        self.send_event(
            "aws.autoscaling",
            "EC2 Instance Launch Unsuccessful",
            serde_json::json!({
                "StatusCode": "Failed", "AutoScalingGroupName": group, "ActivityId": "a-1",
                "Details": {"Availability Zone": "us-east-1a", "Subnet ID": self.subnet},
                "StatusMessage": "We currently do not have sufficient m5.large capacity in the Availability Zone you requested (us-east-1a). Our system will be working on provisioning additional capacity.",
                "Cause": "At 2024-05-01T12:00:00Z an instance was started in response to a difference between desired and actual capacity"
            }),
        )
        .await;
    }

    /// `(instance id, group)` of every instance moto has in a group.
    async fn instances(&self) -> Vec<(String, String)> {
        instances(&self.asg).await
    }

    /// Mirrors moto's instances as KWOK Nodes, as kubelets registering on EC2 would
    /// (moto starts instances but runs no kubelet): a Node per instance, labelled like
    /// an EKS node; the Node of an instance moto no longer has is deleted.
    fn spawn_registrar(&self, client: kube::Client) -> tokio::task::JoinHandle<()> {
        let asg = self.asg.clone();
        tokio::spawn(async move {
            let nodes: Api<Node> = Api::all(client);
            let mut registered: BTreeSet<String> = BTreeSet::new();
            loop {
                let live = instances(&asg).await;
                for (id, group) in &live {
                    if registered.contains(id) {
                        continue;
                    }
                    let node = ec2_node(id, group);
                    match nodes.create(&PostParams::default(), &node).await {
                        Ok(_) => {
                            registered.insert(id.clone());
                        }
                        Err(kube::Error::Api(s)) if s.code == 409 => {
                            registered.insert(id.clone());
                        }
                        Err(e) => eprintln!("registrar: creating the node of {id}: {e}"),
                    }
                }
                let gone: Vec<String> = registered
                    .iter()
                    .filter(|id| !live.iter().any(|(l, _)| l == *id))
                    .cloned()
                    .collect();
                for id in gone {
                    let _ = nodes
                        .delete(&format!("{id}.ec2.internal"), &DeleteParams::default())
                        .await;
                    registered.remove(&id);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    }
}

async fn instances(asg: &aws_sdk_autoscaling::Client) -> Vec<(String, String)> {
    asg.describe_auto_scaling_instances()
        .send()
        .await
        .map(|o| {
            o.auto_scaling_instances()
                .iter()
                .map(|i| {
                    (
                        i.instance_id().unwrap_or_default().to_string(),
                        i.auto_scaling_group_name().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The Node an m5.large instance of `group` registers as (KWOK makes it Ready). It
/// carries the static group label too, so the harness's clean-up removes it.
fn ec2_node(id: &str, group: &str) -> Node {
    autoscaler_bin::kwok::node_named(
        &format!("{id}.ec2.internal"),
        &autoscaler_bin::provider::Instance::in_service(id, group, "us-east-1a", "m5.large"),
    )
}

/// Creates the Deployment `web` (one 500m pod) in `ns`.
async fn deploy_web(client: &kube::Client, ns: &str) {
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &deployment("web", 1, "500m", serde_json::json!({})),
        )
        .await
        .expect("create deployment");
}

/// Ends a scenario: stops the autoscaler and the registrar, removes what it made.
async fn finish(
    mut asc: Autoscaler,
    registrar: tokio::task::JoinHandle<()>,
    client: &kube::Client,
    ns: &str,
    groups: [&str; 2],
) {
    asc.assert_running();
    drop(asc);
    registrar.abort();
    for g in groups {
        cleanup(client, ns, g).await;
    }
}

/// Waits until the one pod of `app` runs on a Ready node of `group`; returns the node.
async fn app_running_in(client: &kube::Client, ns: &str, app: &str, group: &str) -> String {
    wait_for(
        &format!("a Running pod of {app} on a node of {group}"),
        Duration::from_secs(60),
        || {
            let client = client.clone();
            async move {
                let pods = app_pods(&client, ns, app).await;
                let node = pods.iter().filter(|p| is_running(p)).find_map(node_of)?;
                let n = Api::<Node>::all(client.clone())
                    .get_opt(&node)
                    .await
                    .ok()??;
                (n.labels().get(GROUP_LABEL).map(String::as_str) == Some(group)).then_some(node)
            }
        },
    )
    .await
}

/// Pending pod -> asg-a (priority) scaled in moto; ICE on asg-a via SQS -> asg-b scaled,
/// asg-a reverted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_scale_up_then_ice_fails_over() {
    let (cp, _serial) = shared();
    let client = cp.client().await;
    let ns = "e2e-aws";
    namespace(&client, ns).await;
    let w = world(&client, ns, &[("asg-a", true, 50), ("asg-b", false, 10)]).await;
    let asg = &w.asg;
    let mut asc = w.start(cp, ns, &[]).await;
    assert_eq!(
        (desired(asg, "asg-a").await, desired(asg, "asg-b").await),
        (0, 0)
    );

    // A pending pod: asg-a (priority 50) is raised in moto.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let created = Instant::now();
    pods.create(
        &PostParams::default(),
        &pod("web-0", "500m", serde_json::json!({})),
    )
    .await
    .expect("create pod");
    wait_desired(asg, "asg-a", 1).await;
    let up_total = created.elapsed();
    println!(
        "aws: pod created -> asg-a SetDesiredCapacity seen in moto: {:.3}s",
        up_total.as_secs_f64()
    );
    assert!(
        up_total <= Duration::from_secs(5),
        "scale-up took {up_total:?}; log:\n{}",
        asc.tail()
    );
    assert_eq!(desired(asg, "asg-b").await, 0, "only asg-a is scaled");
    asc.assert_running();

    // ICE for asg-a, as EventBridge delivers it to the queue.
    let sent = Instant::now();
    w.send_ice("asg-a").await;
    wait_desired(asg, "asg-b", 1).await;
    let failover = sent.elapsed();
    println!(
        "aws: ICE event sent to SQS -> asg-b SetDesiredCapacity seen in moto: {:.3}s",
        failover.as_secs_f64()
    );
    assert!(
        failover <= Duration::from_secs(5),
        "fail-over took {failover:?}; log:\n{}",
        asc.tail()
    );
    // The revert of asg-a was decided and carried out through the adapter (clamped: moto
    // started the instance at once, see the file's doc).
    let text = wait_for("asg-a's revert in the log", Duration::from_secs(10), || {
        let text = log_text(&asc);
        async move {
            let decided = text
                .lines()
                .any(|l| l.contains("RevertScaleUp") && l.contains("asg-a"));
            let carried_out = text.lines().any(|l| {
                l.contains("asg-a")
                    && (l.contains("AWS: desired capacity clamped")
                        || (l.contains("AWS: desired capacity set") && l.contains("\"to\":0")))
            });
            (decided && carried_out).then_some(text)
        }
    })
    .await;
    assert!(
        text.contains("event from the SQS queue"),
        "the event came through the queue"
    );
    // The status says where each on-demand price came from: moto has no Price List API,
    // so m5.large is priced from the built-in table, and says so.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let status = wait_for(
        "on-demand prices in the status ConfigMap",
        Duration::from_secs(20),
        || {
            let cms = cms.clone();
            async move {
                let cm = cms
                    .get_opt("cluster-autoscaler-status")
                    .await
                    .ok()
                    .flatten()?;
                cm.data?
                    .get("status")
                    .filter(|s| s.contains("onDemandPrices"))
                    .cloned()
            }
        },
    )
    .await;
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&status).expect("status is YAML");
    let m5 = &v["onDemandPrices"]["instanceTypes"]["m5.large"];
    assert_eq!(m5["source"].as_str(), Some("table"), "{status}");
    assert_eq!(m5["usdPerHour"].as_f64(), Some(0.096), "{status}");
    asc.assert_running();
    drop(asc);
    cleanup(&client, ns, "asg-a").await;
    cleanup(&client, ns, "asg-b").await;
}

/// A pod runs on a spot node; the spot interruption warning for its instance, via SQS ->
/// the spot pool cooled off, an on-demand replacement launched, the node drained (the
/// pod moves to the replacement) and its instance terminated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_spot_interruption_drains_and_replaces() {
    let (cp, _serial) = shared();
    let client = cp.client().await;
    let ns = "e2e-aws-interruption";
    namespace(&client, ns).await;
    let w = world(
        &client,
        ns,
        &[("int-spot", true, 50), ("int-od", false, 10)],
    )
    .await;
    let registrar = w.spawn_registrar(client.clone());
    let asc = w.start(cp, ns, &[]).await;

    deploy_web(&client, ns).await;
    let spot_node = app_running_in(&client, ns, "web", "int-spot").await;
    let (spot_instance, _) = w
        .instances()
        .await
        .into_iter()
        .find(|(_, g)| g == "int-spot")
        .expect("the spot instance in moto");
    assert_eq!(desired(&w.asg, "int-od").await, 0);

    let sent = Instant::now();
    w.send_event(
        "aws.ec2",
        "EC2 Spot Instance Interruption Warning",
        serde_json::json!({"instance-id": spot_instance, "instance-action": "terminate"}),
    )
    .await;
    wait_desired(&w.asg, "int-od", 1).await;
    let replaced = sent.elapsed();
    println!(
        "aws: spot interruption warning -> on-demand replacement SetDesiredCapacity: {:.3}s",
        replaced.as_secs_f64()
    );
    assert!(
        replaced <= Duration::from_secs(10),
        "replacement took {replaced:?}; log:\n{}",
        asc.tail()
    );
    // The pod moves to the replacement, within the 2-minute notice.
    let od_node = app_running_in(&client, ns, "web", "int-od").await;
    assert_ne!(od_node, spot_node);
    // The interrupted instance is terminated with a decrement (no new spot launch into
    // the starved pool) and its Node is gone.
    wait_for(
        "the interrupted instance terminated and its Node deleted",
        Duration::from_secs(60),
        || {
            let (asg, client, spot_node, spot_instance) = (
                w.asg.clone(),
                client.clone(),
                spot_node.clone(),
                spot_instance.clone(),
            );
            async move {
                let gone = !instances(&asg)
                    .await
                    .iter()
                    .any(|(i, _)| *i == spot_instance);
                let node = Api::<Node>::all(client).get_opt(&spot_node).await.ok()?;
                (gone && node.is_none() && desired(&asg, "int-spot").await == 0).then_some(())
            }
        },
    )
    .await;
    let log = log_text(&asc);
    assert!(
        log.lines()
            .any(|l| l.contains("SpotInterruption") && l.contains(&spot_instance)),
        "the decision names the interruption"
    );
    println!(
        "aws: spot interruption -> pod running on the replacement and spot node gone: {:.1}s",
        sent.elapsed().as_secs_f64()
    );
    finish(asc, registrar, &client, ns, ["int-spot", "int-od"]).await;
}

/// Drain-back with a short age: spot is starved (ICE via SQS) when a pod arrives, so it
/// lands on on-demand; once the spot cool-off has passed and the on-demand node is older
/// than `--drain-back-after`, a spot node is launched first, then the on-demand node is
/// drained and terminated, and the pod runs on spot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_drain_back_replaces_on_demand_with_spot() {
    let (cp, _serial) = shared();
    let client = cp.client().await;
    let ns = "e2e-aws-drain-back";
    namespace(&client, ns).await;
    let w = world(&client, ns, &[("db-spot", true, 50), ("db-od", false, 10)]).await;
    let registrar = w.spawn_registrar(client.clone());
    let asc = w
        .start(cp, ns, &["--ice-cooloff=10s", "--drain-back-after=20s"])
        .await;

    // Spot is out of capacity before the pod comes.
    w.send_ice("db-spot").await;
    // Taken in by a round, not just read from the queue: a round already under way when
    // the message arrives may see the pod first and raise db-spot, and moto (which has no
    // ICE) then really launches that instance, so the late event rightly reverts nothing.
    wait_for(
        "the ICE event taken in by a round",
        Duration::from_secs(10),
        || {
            let text = log_text(&asc);
            async move {
                text.lines()
                    .any(|l| l.contains("provider event") && l.contains("LaunchFailed"))
                    .then_some(())
            }
        },
    )
    .await;
    deploy_web(&client, ns).await;
    let od_node = app_running_in(&client, ns, "web", "db-od").await;
    let od_since = Instant::now();
    assert_eq!(desired(&w.asg, "db-spot").await, 0, "spot is cooled off");

    // Replacement first: the spot group is raised while the on-demand node still runs.
    wait_for(
        "a spot replacement launched",
        Duration::from_secs(60),
        || {
            let (asg, client, od_node) = (w.asg.clone(), client.clone(), od_node.clone());
            async move {
                if desired(&asg, "db-spot").await < 1 {
                    return None;
                }
                let od = Api::<Node>::all(client).get_opt(&od_node).await.ok()?;
                assert!(
                    od.is_some(),
                    "the on-demand node went before its replacement"
                );
                Some(())
            }
        },
    )
    .await;
    let launched_after = od_since.elapsed();
    assert!(
        launched_after >= Duration::from_secs(15),
        "drain-back started after {launched_after:?}, before --drain-back-after"
    );
    let spot_node = app_running_in(&client, ns, "web", "db-spot").await;
    wait_for(
        "the on-demand node drained and terminated",
        Duration::from_secs(60),
        || {
            let (asg, client, od_node) = (w.asg.clone(), client.clone(), od_node.clone());
            async move {
                let node = Api::<Node>::all(client).get_opt(&od_node).await.ok()?;
                (node.is_none() && desired(&asg, "db-od").await == 0).then_some(())
            }
        },
    )
    .await;
    println!(
        "aws: drain-back: on-demand node {od_node} replaced by spot node {spot_node} {:.1}s after the pod landed",
        od_since.elapsed().as_secs_f64()
    );
    finish(asc, registrar, &client, ns, ["db-spot", "db-od"]).await;
}

/// Two replicas with leader election: only the leader reads the queue (SQS gives each
/// message to one reader, so a standby reading it would take ICE events from the
/// leader); after the leader dies, the new leader reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_only_the_leader_reads_the_event_queue() {
    let (cp, _serial) = shared();
    let client = cp.client().await;
    let ns = "e2e-aws-ha";
    namespace(&client, ns).await;
    let w = world(&client, ns, &[("ha-a", true, 50), ("ha-b", false, 10)]).await;
    let args: Vec<String> = w
        .args(
            ns,
            &[
                "--leader-elect=true",
                "--leader-elect-lease-duration=4s",
                "--leader-elect-renew-deadline=3s",
                "--leader-elect-retry-period=1s",
            ],
        )
        .into_iter()
        .filter(|a| a != "--leader-elect=false")
        .collect();
    let with_name = |name: &'static str| {
        let mut env = AWS_ENV.to_vec();
        env.push(("POD_NAME", name));
        env
    };
    let mut a = Autoscaler::start(cp, "aws-ha-a", &args, &with_name("replica-a"));
    let reading = "AWS: leading: reading the event queue";
    wait_for("replica-a leading", Duration::from_secs(30), || {
        let text = log_text(&a);
        async move { text.contains(reading).then_some(()) }
    })
    .await;
    let mut b = Autoscaler::start(cp, "aws-ha-b", &args, &with_name("replica-b"));
    wait_for("replica-b's caches filled", Duration::from_secs(30), || {
        let text = log_text(&b);
        async move { text.contains("watch caches filled").then_some(()) }
    })
    .await;
    // While a standby long-polled too, these would be split between the two.
    for _ in 0..4 {
        w.send_ice("ha-a").await;
    }
    wait_for(
        "the leader taking in the 4 events",
        Duration::from_secs(20),
        || {
            let text = log_text(&a);
            async move { (text.matches("event from the SQS queue").count() >= 4).then_some(()) }
        },
    )
    .await;
    let standby = log_text(&b);
    assert!(
        !standby.contains(reading) && !standby.contains("event from the SQS queue"),
        "the standby read the queue:\n{}",
        b.tail()
    );
    b.assert_running();

    a.kill();
    let killed = Instant::now();
    wait_for("replica-b leading", Duration::from_secs(30), || {
        let text = log_text(&b);
        async move { text.contains(reading).then_some(()) }
    })
    .await;
    // The dead leader's last long poll (20 s) is still open in SQS and would take a
    // message sent now: it would reach the new leader only after the 60 s visibility
    // timeout. Send once that poll has ended.
    tokio::time::sleep_until((killed + Duration::from_secs(21)).into()).await;
    w.send_ice("ha-b").await;
    wait_for(
        "the new leader taking in an event",
        Duration::from_secs(20),
        || {
            let text = log_text(&b);
            async move { text.contains("event from the SQS queue").then_some(()) }
        },
    )
    .await;
    b.assert_running();
    drop((a, b));
    cleanup(&client, ns, "ha-a").await;
}

impl World {
    /// `(visible, in flight)` messages of the event queue, as SQS counts them.
    async fn queue_depth(&self) -> (u64, u64) {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes");
        let get = |a: A| {
            out.attributes()
                .and_then(|m| m.get(&a))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (
            get(A::ApproximateNumberOfMessages),
            get(A::ApproximateNumberOfMessagesNotVisible),
        )
    }
}

fn count(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// Waits until `asc` has logged more lines containing `needle` than `before`.
async fn wait_for_more_lines(what: &str, asc: &harness::Autoscaler, needle: &str, before: usize) {
    wait_for(what, Duration::from_secs(60), || {
        let text = log_text(asc);
        async move { (count(&text, needle) > before).then_some(()) }
    })
    .await;
}

/// At-least-once SQS: the controller receives an ICE event, its round fails (Auto Scaling
/// answers 500 through the fault proxy), and it is killed before any round succeeds, so
/// the message is never deleted. After a restart (faults gone) the message comes back
/// after the visibility timeout and is acted on once: the fallback group is raised to
/// exactly what the plan asks, the queue ends empty, the new process took the event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_event_received_then_killed_before_a_round_is_acted_on_after_restart_once() {
    let (cp, _serial) = shared();
    let client = cp.client().await;
    let ns = "e2e-aws-redeliver";
    namespace(&client, ns).await;
    let w = world(&client, ns, &[("rd-a", true, 50), ("rd-b", false, 10)]).await;
    let extra = ["--event-queue-visibility-timeout=5s"];
    let mut first = w.start_as(cp, "aws-redeliver-1", ns, &extra).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.create(
        &PostParams::default(),
        &pod("web-0", "500m", serde_json::json!({})),
    )
    .await
    .expect("create pod");
    wait_desired(&w.asg, "rd-a", 1).await;

    // Rounds fail from now on: every DescribeAutoScalingGroups answers 500. A round may
    // start from a scan that finished less than 5 s ago (the next is read in the background), so the message is sent
    // only once a round has failed: from then on every round needs a scan and fails.
    let failed_before_fault = count(&log_text(&first), "decision round failed");
    w.proxy.inject(Fault::query(
        "DescribeAutoScalingGroups",
        500,
        "InternalFailure",
        u32::MAX,
    ));
    wait_for_more_lines(
        "rounds failing on the describe",
        &first,
        "decision round failed",
        failed_before_fault,
    )
    .await;
    w.send_ice("rd-a").await;
    wait_for(
        "the first process receiving the ICE message",
        Duration::from_secs(30),
        || {
            let text = log_text(&first);
            async move { text.contains("event from the SQS queue").then_some(()) }
        },
    )
    .await;
    let failed_before = count(&log_text(&first), "decision round failed");
    wait_for_more_lines(
        "a round that took the event failing",
        &first,
        "decision round failed",
        failed_before,
    )
    .await;
    let text = log_text(&first);
    assert!(
        !text
            .lines()
            .any(|l| l.contains("AWS: desired capacity") && l.contains("rd-b")),
        "the first process acted on the event:\n{}",
        first.tail()
    );
    first.kill();
    let killed = Instant::now();
    assert_eq!(
        desired(&w.asg, "rd-b").await,
        0,
        "nothing done before the kill"
    );
    assert_eq!(
        w.queue_depth().await,
        (0, 1),
        "the message is received, not deleted"
    );

    w.proxy.clear();
    let second = w.start_as(cp, "aws-redeliver-2", ns, &extra).await;
    wait_desired(&w.asg, "rd-b", 1).await;
    let recovered = killed.elapsed();
    println!(
        "aws: killed between receive and round -> event acted on by the restarted process {:.1}s after the kill (visibility timeout 5 s)",
        recovered.as_secs_f64()
    );
    // Longer than the visibility timeout and several rounds: nothing comes back, nothing
    // is done twice.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(desired(&w.asg, "rd-b").await, 1, "scaled up once");
    assert_eq!(w.queue_depth().await, (0, 0), "the message was deleted");
    let text = log_text(&second);
    assert_eq!(
        count(&text, "event from the SQS queue"),
        1,
        "the restarted process took the event once:\n{}",
        second.tail()
    );
    drop((first, second));
    cleanup(&client, ns, "rd-a").await;
    cleanup(&client, ns, "rd-b").await;
}

/// Length of the AWS fault windows: `AUTOSCALER_FAULT_WINDOW_SECS` (the figure is
/// 60 s; CI uses 15 s to stay short).
fn fault_window() -> Duration {
    Duration::from_secs(
        std::env::var("AUTOSCALER_FAULT_WINDOW_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(15),
    )
}

/// Auto Scaling and EC2 answer 500, then throttle (400 Throttling), each for a window,
/// while a pod waits: nothing is scaled during a window, each scale-up happens once
/// after it (the group ends at exactly the 2 nodes the 2 pods need), the process stays
/// up, and the failed rounds name the kind of error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_5xx_and_throttling_windows_delay_the_scale_up_and_duplicate_nothing() {
    let (cp, _serial) = shared();
    let client = cp.client().await;
    let ns = "e2e-aws-faults";
    namespace(&client, ns).await;
    let w = world(&client, ns, &[("flt-a", false, 50)]).await;
    let mut asc = w.start_as(cp, "aws-faults", ns, &[]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let window = fault_window();
    for (i, (status, code, kind)) in [
        (500u16, "InternalFailure", "\"kind\":\"api\""),
        (400, "Throttling", "\"kind\":\"throttled\""),
    ]
    .into_iter()
    .enumerate()
    {
        let want = i as i32 + 1;
        w.proxy
            .inject(Fault::query(Fault::ANY_QUERY, status, code, 0).for_window(window));
        let ends = Instant::now() + window;
        // 1500m: one pod per m5.large, so each pod needs its own node.
        pods.create(
            &PostParams::default(),
            &pod(&format!("web-{i}"), "1500m", serde_json::json!({})),
        )
        .await
        .expect("create pod");
        tokio::time::sleep_until((ends - Duration::from_secs(1)).into()).await;
        assert_eq!(
            desired(&w.asg, "flt-a").await,
            want - 1,
            "scaled during the {code} window"
        );
        tokio::time::sleep_until(ends.into()).await;
        let ended = Instant::now();
        wait_for(
            &format!("flt-a raised to {want} after the {code} window"),
            Duration::from_secs(60),
            || {
                let asg = w.asg.clone();
                async move { (desired(&asg, "flt-a").await >= want).then_some(()) }
            },
        )
        .await;
        println!(
            "aws: {code} ({status}) on every Auto Scaling/EC2 call for {}s -> scale-up {:.1}s after the window ended",
            window.as_secs(),
            ended.elapsed().as_secs_f64()
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            desired(&w.asg, "flt-a").await,
            want,
            "no duplicate scale-up"
        );
        let log = log_text(&asc);
        assert!(
            log.lines()
                .any(|l| l.contains("decision round failed") && l.contains(kind)),
            "no failed round with {kind}:\n{}",
            asc.tail()
        );
        asc.assert_running();
    }
    assert!(w.proxy.injected_count() > 0);
    drop(asc);
    cleanup(&client, ns, "flt-a").await;
}

/// SQS answers 500 for a window: an ICE event sent meanwhile is not lost; it is acted on
/// once SQS answers again (fail-over to the next group, once) and the queue ends empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_sqs_errors_delay_events_and_lose_none() {
    let (cp, _serial) = shared();
    let client = cp.client().await;
    let ns = "e2e-aws-sqs-faults";
    namespace(&client, ns).await;
    let w = world(&client, ns, &[("sq-a", true, 50), ("sq-b", false, 10)]).await;
    let asc = w.start_as(cp, "aws-sqs-faults", ns, &[]).await;
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &pod("web-0", "500m", serde_json::json!({})),
        )
        .await
        .expect("create pod");
    wait_desired(&w.asg, "sq-a", 1).await;
    // The long poll open now reached moto before the fault: wait for it to end (at most
    // 20 s) and a new one to fail, so the event is sent while SQS is really failing.
    let window = fault_window() + Duration::from_secs(20);
    w.proxy
        .inject(Fault::sqs(Fault::ANY_SQS, 500, "InternalError", 0).for_window(window));
    let ends = Instant::now() + window;
    wait_for("a failed SQS call", Duration::from_secs(25), || {
        let n = w.proxy.injected_count();
        async move { (n > 0).then_some(()) }
    })
    .await;
    w.send_ice("sq-a").await;
    tokio::time::sleep_until((ends - Duration::from_secs(1)).into()).await;
    assert_eq!(
        desired(&w.asg, "sq-b").await,
        0,
        "acted before SQS answered"
    );
    tokio::time::sleep_until(ends.into()).await;
    let ended = Instant::now();
    wait_desired(&w.asg, "sq-b", 1).await;
    println!(
        "aws: SQS 500s for {}s -> ICE event acted on {:.1}s after SQS recovered",
        window.as_secs(),
        ended.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(desired(&w.asg, "sq-b").await, 1, "failed over once");
    assert_eq!(w.queue_depth().await, (0, 0), "the message was deleted");
    assert!(
        log_text(&asc).contains("SQS receive failed"),
        "the outage shows in the log"
    );
    drop(asc);
    cleanup(&client, ns, "sq-a").await;
    cleanup(&client, ns, "sq-b").await;
}

/// `--record-dir` beside a live peak with an ICE (issue 13): `web` grows to 2 pods (asg-spot
/// raised), asg-spot reports InsufficientInstanceCapacity through SQS (the failover to
/// asg-od), then the peak: 8 pods, all on asg-od while spot cools off. The recording
/// must hold every decision the controller logged, the ICE event and the counts, and
/// nothing else. With `AUTOSCALER_RECORDING_OUT=DIR` the recording is copied there
/// (how `simulator/recordings/e2e-ice` was made; `autoscaler-sim replay` reads it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_recording_of_a_peak_with_ice() {
    let (cp, _serial) = shared();
    let client = cp.client().await;
    let ns = "e2e-aws-rec";
    namespace(&client, ns).await;
    let w = world(
        &client,
        ns,
        &[("asg-spot", true, 50), ("asg-od", false, 10)],
    )
    .await;
    let dir = cp.dir.join("recording");
    let _ = std::fs::remove_dir_all(&dir);
    let record = format!("--record-dir={}", dir.display());
    let asc = w
        // Its own log: the other tests' controllers (run in parallel) log decisions too.
        .start_as(
            cp,
            "aws-recording",
            ns,
            &[&record, "--record-max-bytes=1048576"],
        )
        .await;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), ns);
    deployments
        .create(
            &PostParams::default(),
            &deployment("web", 2, "500m", serde_json::json!({})),
        )
        .await
        .expect("create deployment");
    wait_desired(&w.asg, "asg-spot", 1).await;
    w.send_ice("asg-spot").await;
    wait_desired(&w.asg, "asg-od", 1).await;
    // Out of capacity means no instance: take back the one moto started at once, then
    // let instances register as nodes (before this, a spot node would have taken the
    // pods ahead of the ICE event).
    for (id, group) in w.instances().await {
        if group == "asg-spot" {
            w.asg
                .terminate_instance_in_auto_scaling_group()
                .instance_id(id)
                .should_decrement_desired_capacity(true)
                .send()
                .await
                .expect("terminate the ICE'd spot instance");
        }
    }
    let registrar = w.spawn_registrar(client.clone());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let scale = |n: u32| serde_json::json!({"spec": {"replicas": n}});
    deployments
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(scale(8)),
        )
        .await
        .expect("scale web to 8");
    wait_for("8 web pods Running", Duration::from_secs(60), || {
        let client = client.clone();
        async move {
            let pods = app_pods(&client, ns, "web").await;
            (pods.len() == 8 && pods.iter().all(is_running)).then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let log = log_text(&asc);
    finish(asc, registrar, &client, ns, ["asg-spot", "asg-od"]).await;

    let mut lines = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the recording folder exists")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in &files {
        lines.extend(autoscaler_bin::recording::read_lines(f).expect("recording parses"));
    }
    use autoscaler_core::recording::RecordLine;
    let rounds: Vec<_> = lines
        .iter()
        .filter_map(|l| match l {
            RecordLine::Round(r) => Some(r),
            _ => None,
        })
        .collect();
    let recorded: Vec<(String, String)> = rounds
        .iter()
        .flat_map(|r| {
            r.decisions
                .iter()
                .map(|d| (d.kind.clone(), d.group.clone()))
        })
        .collect();
    let logged = log
        .lines()
        .filter(|l| l.contains("\"message\":\"decision\""))
        .count();
    println!(
        "recording: {} files, {} rounds, decisions {recorded:?}",
        files.len(),
        rounds.len()
    );
    assert_eq!(recorded.len(), logged, "every logged decision is recorded");
    for want in [("ScaleUp", "asg-spot"), ("ScaleUp", "asg-od")] {
        assert!(
            recorded.iter().any(|(k, g)| k == want.0 && g == want.1),
            "{want:?} recorded: {recorded:?}"
        );
    }
    assert!(
        rounds.iter().flat_map(|r| &r.events).any(|e| matches!(e,
            autoscaler_core::Event::LaunchFailed { group, reason: autoscaler_core::LaunchFailureReason::InsufficientInstanceCapacity, .. } if group == "asg-spot")),
        "the ICE event is recorded"
    );
    let peak = rounds
        .iter()
        .flat_map(|r| &r.workloads)
        .map(|c| c.pods)
        .max();
    assert_eq!(peak, Some(8), "the peak's pods are counted");
    if let Ok(out) = std::env::var("AUTOSCALER_RECORDING_OUT") {
        std::fs::create_dir_all(&out).expect("AUTOSCALER_RECORDING_OUT folder");
        for f in &files {
            std::fs::copy(f, std::path::Path::new(&out).join(f.file_name().unwrap()))
                .expect("copy recording");
        }
    }
}

/// A scan slower than `SCAN_REUSE` (a large cluster, a slow endpoint) still serves the
/// round right after it: the reuse window counts from the scan's end. Counted from its
/// start, every scan that slow was stale on arrival, and each round of a burst waited
/// for a describe of its own (the 5,000-node burst bench: rounds 6.8 s apart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_slow_scan_serves_the_round_that_follows_it() {
    use autoscaler_bin::aws_provider::{AwsProvider, SCAN_REUSE};
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port).await;
    let sdk = sdk_config(&proxy.endpoint());
    let asg = aws_sdk_autoscaling::Client::new(&sdk);
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let lt = launch_template(&ec2, "lt-slow", false).await;
    asg.create_auto_scaling_group()
        .auto_scaling_group_name("slow")
        .min_size(0)
        .max_size(5)
        .desired_capacity(0)
        .availability_zones("us-east-1a")
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_id(lt)
                .version("$Latest")
                .build(),
        )
        .tags(tag("slow", ENABLED_TAG, "true"))
        .send()
        .await
        .expect("create group");
    let specs =
        vec![
            autoscaler_aws::GroupSpec::parse_auto_discovery(&format!("asg:tag={ENABLED_TAG}"))
                .unwrap(),
        ];
    let timeouts = autoscaler_aws::TimeoutSettings {
        attempt: Duration::from_secs(60),
        operation: Duration::from_secs(120),
    };
    let provider = AwsProvider::new(&sdk, specs, None, timeouts);
    proxy.inject(Fault::delay(
        "DescribeAutoScalingGroups",
        SCAN_REUSE + Duration::from_secs(1),
        1,
    ));
    let first = provider.scan_for_round(SCAN_REUSE).await.expect("scan");
    assert_eq!(first.groups.len(), 1, "{:?}", first.errors);
    assert_eq!(proxy.answered("DescribeAutoScalingGroups"), 1);
    // The next round reuses it and starts the next scan in the background: make that
    // one slow too.
    proxy.inject(Fault::delay(
        "DescribeAutoScalingGroups",
        SCAN_REUSE + Duration::from_secs(5),
        1,
    ));
    let second = provider.scan_for_round(SCAN_REUSE).await.expect("scan");
    assert!(
        std::sync::Arc::ptr_eq(&first, &second),
        "the round after a slow scan read AWS again instead of reusing it"
    );
    // Past SCAN_REUSE, while that scan is still being read, a round takes the last one
    // instead of waiting for it.
    tokio::time::sleep(SCAN_REUSE + Duration::from_secs(1)).await;
    let third = provider.scan_for_round(SCAN_REUSE).await.expect("scan");
    assert!(
        std::sync::Arc::ptr_eq(&first, &third),
        "a round waited for the background scan although the last one was young enough"
    );
}
