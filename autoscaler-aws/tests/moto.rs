//! Integration tests with the real SDK clients against a moto server (started here).
//!
//! moto's gaps, and how each is covered without bending the adapter:
//! - instances start at once, in one zone, never as spot: groups are one-zone and the
//!   spot market is asserted from the launch template / mixed-instances policy;
//! - no scaling activities: the activity path is exercised (the call is made and
//!   counted) and the classification is unit-tested on AWS-shaped activities;
//! - no launch failures or interruptions: they are fed in as real EventBridge events
//!   (`PutEvents`, which moto routes through the real rules to the SQS queue) and one
//!   malformed message straight into SQS;
//! - no throttling or 5xx: a fault-injecting proxy sits between the SDK and moto;
//! - moto accepts `SetDesiredCapacity` above max and answers 500 for unknown groups:
//!   the adapter clamps and checks groups itself, as it must against AWS too.

mod common;

use autoscaler_aws::{
    AwsCloud, AwsConfig, AwsError, EventInfra, GroupProblem, GroupSpec, Op, Outcome, QueueConfig,
    RetrySettings,
};
use autoscaler_core::{
    Autoscaler, AutoscalerConfig, CapacityType, ClusterSnapshot, Decision, Event, InterruptionKind,
    LaunchFailureReason, Node, Pod, Resources, ScaleUpCause, SnapshotParts, TaintEffect, Timestamp,
};
use aws_sdk_autoscaling::types::{
    InstancesDistribution, LaunchTemplate, LaunchTemplateOverrides, LaunchTemplateSpecification,
    MixedInstancesPolicy,
};
use common::{sdk_config, tag, Fault, FaultProxy, Moto, Raw};
use std::time::{Duration, Instant};

const CLUSTER: &str = "k8s.io/cluster-autoscaler/prod";
const ENABLED: &str = "k8s.io/cluster-autoscaler/enabled";

fn fast_retry() -> RetrySettings {
    RetrySettings {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
    }
}

fn cloud(endpoint: &str, specs: Vec<GroupSpec>) -> AwsCloud {
    let mut config = AwsConfig {
        retry: fast_retry(),
        ..AwsConfig::default()
    };
    config.scan.specs = specs;
    AwsCloud::new(&sdk_config(endpoint), config)
}

async fn mixed_group(
    raw: &Raw,
    name: &str,
    lt: &str,
    subnet: &str,
    desired: i32,
    tags: &[(&str, &str)],
) {
    let mut req = raw
        .asg
        .create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .min_size(0)
        .max_size(10)
        .desired_capacity(desired)
        .vpc_zone_identifier(subnet)
        .mixed_instances_policy(
            MixedInstancesPolicy::builder()
                .launch_template(
                    LaunchTemplate::builder()
                        .launch_template_specification(
                            LaunchTemplateSpecification::builder()
                                .launch_template_id(lt)
                                .version("$Latest")
                                .build(),
                        )
                        .overrides(
                            LaunchTemplateOverrides::builder()
                                .instance_type("m5.large")
                                .build(),
                        )
                        .overrides(
                            LaunchTemplateOverrides::builder()
                                .instance_type("m5a.large")
                                .build(),
                        )
                        .overrides(
                            LaunchTemplateOverrides::builder()
                                .instance_type("g4dn.xlarge")
                                .build(),
                        )
                        .build(),
                )
                .instances_distribution(
                    InstancesDistribution::builder()
                        .on_demand_base_capacity(0)
                        .on_demand_percentage_above_base_capacity(0)
                        .spot_allocation_strategy("price-capacity-optimized")
                        .build(),
                )
                .build(),
        );
    for (k, v) in tags {
        req = req.tags(tag(name, k, v));
    }
    req.send().await.expect("create mixed group");
}

async fn plain_group(
    raw: &Raw,
    name: &str,
    lt: &str,
    subnet: &str,
    (min, max, desired): (i32, i32, i32),
    tags: &[(&str, &str)],
) {
    let mut req = raw
        .asg
        .create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .min_size(min)
        .max_size(max)
        .desired_capacity(desired)
        .vpc_zone_identifier(subnet)
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_id(lt)
                .version("$Latest")
                .build(),
        );
    for (k, v) in tags {
        req = req.tags(tag(name, k, v));
    }
    req.send().await.expect("create group");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_by_tags_and_by_name_with_mixed_instances() {
    let moto = Moto::start();
    let sdk = sdk_config(&moto.endpoint());
    let raw = Raw::new(&sdk);
    let subnet = raw.subnet("us-east-1a").await;
    let lt_od = raw.launch_template("lt-od", "c5.xlarge", false).await;
    let lt_spot = raw.launch_template("lt-spot", "m5.large", true).await;

    mixed_group(
        &raw,
        "web-mixed",
        &lt_od,
        &subnet,
        2,
        &[
            (ENABLED, "true"),
            (CLUSTER, "owned"),
            ("k8s.io/cluster-autoscaler/node-template/label/team", "web"),
            (
                "k8s.io/cluster-autoscaler/node-template/taint/dedicated",
                "web:NoSchedule",
            ),
            (
                "k8s.io/cluster-autoscaler/node-template/resources/ephemeral-storage",
                "100Gi",
            ),
            (
                "k8s.io/cluster-autoscaler/node-template/autoscaling-options/scaledownunneededtime",
                "5m",
            ),
        ],
    )
    .await;
    plain_group(
        &raw,
        "batch-od",
        &lt_od,
        &subnet,
        (1, 5, 1),
        &[(ENABLED, "true"), (CLUSTER, "owned")],
    )
    .await;
    plain_group(
        &raw,
        "lt-spot",
        &lt_spot,
        &subnet,
        (0, 5, 0),
        &[(ENABLED, "true"), (CLUSTER, "owned")],
    )
    .await;
    // Only one of the two tags: excluded (keys are ANDed).
    plain_group(
        &raw,
        "other-cluster",
        &lt_od,
        &subnet,
        (0, 5, 0),
        &[(ENABLED, "true")],
    )
    .await;
    // Malformed taint: reported, the others go on.
    plain_group(
        &raw,
        "bad-taint",
        &lt_od,
        &subnet,
        (0, 5, 0),
        &[
            (ENABLED, "true"),
            (CLUSTER, "owned"),
            (
                "k8s.io/cluster-autoscaler/node-template/taint/x",
                "y:Sometimes",
            ),
        ],
    )
    .await;
    plain_group(&raw, "named", &lt_od, &subnet, (0, 8, 0), &[]).await;

    let cloud = cloud(
        &moto.endpoint(),
        vec![
            GroupSpec::parse_auto_discovery(&format!("asg:tag={ENABLED},{CLUSTER}")).unwrap(),
            GroupSpec::parse_nodes("1:4:named").unwrap(),
            GroupSpec::parse_nodes("0:3:does-not-exist").unwrap(),
        ],
    );
    let scan = cloud.scan().await.expect("scan");
    let names: Vec<&str> = scan.groups.iter().map(|g| g.group.name.as_str()).collect();
    assert_eq!(names, ["batch-od", "lt-spot", "named", "web-mixed"]);
    let problems: Vec<String> = scan.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("does-not-exist") && p.contains("does not exist")),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("bad-taint") && p.contains("value:Effect")),
        "{problems:#?}"
    );

    let web = scan.group("web-mixed").unwrap();
    assert_eq!(web.group.capacity_type, CapacityType::Spot);
    assert_eq!(web.group.zones, ["us-east-1a"]);
    let types: Vec<(&str, u32, u64, u64)> = web
        .group
        .instance_types
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                t.vcpus,
                t.memory_mib,
                t.allocatable.extended("nvidia.com/gpu"),
            )
        })
        .collect();
    assert_eq!(
        types,
        [
            ("m5.large", 2, 8192, 0),
            ("m5a.large", 2, 8192, 0),
            ("g4dn.xlarge", 4, 16384, 1)
        ]
    );
    assert!(web
        .group
        .instance_types
        .iter()
        .all(|t| t.allocatable.ephemeral_storage_bytes == 100 << 30));
    assert!(web
        .group
        .instance_types
        .iter()
        .all(|t| t.price_per_hour > 0.0));
    assert_eq!(web.group.template.labels["team"], "web");
    assert_eq!(web.group.template.taints[0].effect, TaintEffect::NoSchedule);
    assert_eq!(
        web.options.scale_down_unneeded_time,
        Some(Duration::from_secs(300))
    );
    // The option reaches the core's model of the group, which applies it per group.
    assert_eq!(
        web.group.options.scale_down_unneeded_time,
        Some(Duration::from_secs(300))
    );
    assert_eq!(
        (web.group.target_size, web.group.current_instances),
        (2, Some(2))
    );
    assert_eq!(web.instances.len(), 2);
    assert!(web
        .instances
        .iter()
        .all(|i| i.zone == "us-east-1a" && i.state == "InService"));
    // A group with one market gives it to its instances without a DescribeInstances
    // call (moto, which never launches spot, would have answered on-demand).
    assert!(web
        .instances
        .iter()
        .all(|i| i.lifecycle == Some(CapacityType::Spot)));

    let batch = scan.group("batch-od").unwrap();
    assert_eq!(batch.group.capacity_type, CapacityType::OnDemand);
    assert_eq!(batch.group.instance_types[0].name, "c5.xlarge");
    assert_eq!(batch.group.instance_types[0].price_per_hour, 0.17);
    assert_eq!(
        scan.group("lt-spot").unwrap().group.capacity_type,
        CapacityType::Spot
    );
    let named = scan.group("named").unwrap();
    assert_eq!((named.group.min_size, named.group.max_size), (1, 4));

    // Node <-> instance by providerID.
    let inst = &web.instances[0];
    let mut nodes = vec![
        node("ip-10-0-0-1", Some(&inst.provider_id())),
        node("ip-10-0-0-2", Some("aws:///us-east-1a/i-00000000000000000")),
        node("fargate", None),
    ];
    let unmapped = scan.map_nodes(&mut nodes);
    assert_eq!(nodes[0].group.as_deref(), Some("web-mixed"));
    assert_eq!(unmapped, ["ip-10-0-0-2"]);

    // The groups make a valid core snapshot.
    ClusterSnapshot::new(SnapshotParts {
        groups: scan.node_groups(),
        ..Default::default()
    })
    .expect("valid snapshot");

    // A second scan is served from the caches: one DescribeAutoScalingGroups per spec
    // (the named groups and the tag query).
    let again = cloud.scan().await.unwrap();
    assert_eq!(again.aws_calls, 2, "steady-state scan");
    assert!(scan.aws_calls > again.aws_calls);
    let m = cloud.metrics();
    assert_eq!(
        m.op(Op::DescribeInstanceTypes).calls,
        1,
        "types batched into one call"
    );
    assert_eq!(
        m.op(Op::DescribeInstances).calls,
        0,
        "every group here runs one market"
    );
}

fn node(name: &str, provider_id: Option<&str>) -> Node {
    Node {
        name: name.into(),
        provider_id: provider_id.map(str::to_string),
        group: None,
        capacity_type: CapacityType::OnDemand,
        capacity: Resources::default(),
        allocatable: Resources::new(2000, 8 << 30).with_pods(29),
        labels: Default::default(),
        annotations: Default::default(),
        taints: vec![],
        created_at: Timestamp::ZERO,
        ready: true,
        ready_changed_at: None,
        unschedulable: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_clamp_conflict_and_terminate_with_decrement() {
    let moto = Moto::start();
    let sdk = sdk_config(&moto.endpoint());
    let raw = Raw::new(&sdk);
    let subnet = raw.subnet("us-east-1a").await;
    let lt = raw.launch_template("lt", "m5.large", false).await;
    plain_group(&raw, "g", &lt, &subnet, (0, 5, 1), &[]).await;
    let cloud = cloud(
        &moto.endpoint(),
        vec![GroupSpec::parse_nodes("0:5:g").unwrap()],
    );

    let up = |delta: u32, new_target: u32| Decision::ScaleUp {
        group: "g".into(),
        delta,
        new_target,
        cause: ScaleUpCause::PendingPods,
        reason: "test".into(),
    };
    assert_eq!(
        cloud.apply(&[up(2, 3)]).await,
        [Outcome::Applied {
            group: "g".into(),
            from: 1,
            to: 3
        }]
    );
    assert_eq!(raw.desired("g").await, 3);
    // Retrying the same decision is a no-op.
    assert_eq!(
        cloud.apply(&[up(2, 3)]).await,
        [Outcome::AlreadyApplied {
            group: "g".into(),
            desired: 3
        }]
    );
    // Never beyond max (moto would accept 9; AWS would reject it).
    let out = cloud.apply(&[up(6, 9)]).await;
    assert!(
        matches!(
            &out[0],
            Outcome::Clamped {
                to: 5,
                requested: 9,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(raw.desired("g").await, 5);

    // Someone else lowers it: the next decision based on 5 is not written.
    raw.asg
        .set_desired_capacity()
        .auto_scaling_group_name("g")
        .desired_capacity(4)
        .send()
        .await
        .unwrap();
    let revert = Decision::RevertScaleUp {
        group: "g".into(),
        cancelled: 2,
        new_target: 3,
        reason: "ICE".into(),
    };
    assert_eq!(
        cloud.apply(std::slice::from_ref(&revert)).await,
        [Outcome::Conflict {
            group: "g".into(),
            expected: 5,
            actual: 4
        }]
    );
    assert_eq!(cloud.metrics().external_changes(), 1);

    // A revert never lowers below the instances AWS has running (moto runs them all).
    raw.asg
        .set_desired_capacity()
        .auto_scaling_group_name("g")
        .desired_capacity(5)
        .send()
        .await
        .unwrap();
    let out = cloud.apply(&[revert]).await;
    assert!(
        matches!(
            &out[0],
            Outcome::Clamped {
                to: 5,
                requested: 3,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(raw.desired("g").await, 5);

    // Unknown group: a clear error, the other decisions still applied.
    let out = cloud
        .apply(&[Decision::ScaleUp {
            group: "nope".into(),
            delta: 1,
            new_target: 1,
            cause: ScaleUpCause::PendingPods,
            reason: "t".into(),
        }])
        .await;
    assert!(
        matches!(&out[0], Outcome::Failed { error: AwsError::UnknownGroup(g), .. } if g == "nope"),
        "{out:?}"
    );

    // Terminate with decrement, then retry.
    let scan = cloud.scan().await.unwrap();
    let victim = scan.group("g").unwrap().instances[0].id.clone();
    assert_eq!(
        cloud.terminate_instance(&victim, true).await,
        Outcome::Terminated {
            instance_id: victim.clone(),
            decremented: true
        }
    );
    assert_eq!(raw.desired("g").await, 4);
    let scan = cloud.scan().await.unwrap();
    assert!(scan
        .group("g")
        .unwrap()
        .instances
        .iter()
        .all(|i| i.id != victim));
    assert_eq!(
        cloud.terminate_instance(&victim, true).await,
        Outcome::AlreadyTerminated {
            instance_id: victim.clone()
        }
    );
    assert_eq!(
        raw.desired("g").await,
        4,
        "a retry does not decrement twice"
    );
}

fn put_event(
    source: &str,
    detail_type: &str,
    detail: serde_json::Value,
) -> aws_sdk_eventbridge::types::PutEventsRequestEntry {
    aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
        .source(source)
        .detail_type(detail_type)
        .detail(detail.to_string())
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_via_eventbridge_rules_and_sqs_reach_the_core() {
    let moto = Moto::start();
    let sdk = sdk_config(&moto.endpoint());
    let raw = Raw::new(&sdk);
    let subnet = raw.subnet("us-east-1a").await;
    let lt_spot = raw.launch_template("lt-spot", "m5.xlarge", true).await;
    let lt_od = raw.launch_template("lt-od", "m5.xlarge", false).await;
    plain_group(
        &raw,
        "web-spot",
        &lt_spot,
        &subnet,
        (0, 10, 0),
        &[(ENABLED, "true"), (CLUSTER, "owned")],
    )
    .await;
    plain_group(
        &raw,
        "web-od",
        &lt_od,
        &subnet,
        (0, 10, 1),
        &[(ENABLED, "true"), (CLUSTER, "owned")],
    )
    .await;
    let cloud = cloud(&moto.endpoint(), vec![GroupSpec::for_cluster("prod")]);

    // The rules and the queue, created and verified with the real EventBridge/SQS APIs.
    let infra = EventInfra::for_cluster("prod");
    let state = infra
        .ensure(cloud.api())
        .await
        .expect("ensure rules and queue");
    assert_eq!(state.rule_arns.len(), 5);
    assert_eq!(
        infra.verify(cloud.api()).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        infra.ensure(cloud.api()).await.unwrap(),
        state,
        "ensure is idempotent"
    );

    let scan = cloud.scan().await.unwrap();
    let od_instance = scan.group("web-od").unwrap().instances[0].clone();
    let queue = cloud.event_queue(QueueConfig {
        wait: Duration::from_secs(1),
        ..QueueConfig::new(&state.queue_url)
    });
    queue.learn(&scan);

    // The core decides a spot scale-up, the adapter carries it out.
    let mut engine = Autoscaler::new(AutoscalerConfig::default()).unwrap();
    engine
        .set_priorities("50: ['spot']\n10: ['on-demand']\n")
        .unwrap();
    let snapshot = ClusterSnapshot::new(SnapshotParts {
        groups: scan.node_groups(),
        pods: (0..6)
            .map(|i| Pod::pending(format!("web-{i}"), Resources::parse("1", "2Gi").unwrap()).into())
            .collect(),
        ..Default::default()
    })
    .unwrap();
    let t0 = Timestamp::from_secs(1_000);
    let first = engine.decide(&snapshot, t0);
    assert!(
        matches!(&first.actions[..], [Decision::ScaleUp { group, .. }] if group == "web-spot"),
        "{:?}",
        first.actions
    );
    let out = cloud.apply(&first.actions).await;
    assert!(matches!(&out[0], Outcome::Applied { .. }), "{out:?}");

    // AWS reports: ICE for the spot group, a spot interruption, a rebalance, a state
    // change to running (ignored), an EC2 retirement; plus one malformed message.
    let entries = vec![
        put_event(
            "aws.autoscaling",
            "EC2 Instance Launch Unsuccessful",
            serde_json::json!({
                "StatusCode": "Failed", "AutoScalingGroupName": "web-spot", "ActivityId": "a-1",
                "Details": {"Availability Zone": "us-east-1a", "Subnet ID": subnet},
                "StatusMessage": "We currently do not have sufficient m5.xlarge capacity in the Availability Zone you requested (us-east-1a). Our system will be working on provisioning additional capacity. You can currently get m5.xlarge capacity by not specifying an Availability Zone in your request or choosing us-east-1b.",
                "Cause": "At 2024-05-01T12:00:00Z an instance was started in response to a difference between desired and actual capacity"
            }),
        ),
        put_event(
            "aws.ec2",
            "EC2 Spot Instance Interruption Warning",
            serde_json::json!({
                "instance-id": od_instance.id, "instance-action": "terminate"
            }),
        ),
        put_event(
            "aws.ec2",
            "EC2 Instance Rebalance Recommendation",
            serde_json::json!({"instance-id": "i-0rebalance"}),
        ),
        put_event(
            "aws.ec2",
            "EC2 Instance State-change Notification",
            serde_json::json!({"instance-id": "i-0stopping", "state": "stopping"}),
        ),
        put_event(
            "aws.health",
            "AWS Health Event",
            serde_json::json!({
                "service": "EC2", "eventTypeCategory": "scheduledChange",
                "eventTypeCode": "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
                "startTime": "Sat, 05 Jun 2021 15:10:09 GMT",
                "affectedEntities": [{"entityValue": "i-0retire"}]
            }),
        ),
    ];
    let sent = Instant::now();
    let put = raw
        .events
        .put_events()
        .set_entries(Some(entries))
        .send()
        .await
        .unwrap();
    assert_eq!(put.failed_entry_count(), 0);
    // Matches no rule: never reaches the queue.
    raw.events
        .put_events()
        .entries(put_event(
            "aws.ec2",
            "EC2 Instance State-change Notification",
            serde_json::json!({"instance-id": "i-1", "state": "running"}),
        ))
        .send()
        .await
        .unwrap();
    raw.sqs
        .send_message()
        .queue_url(&state.queue_url)
        .message_body("{\"this is\": not json")
        .send()
        .await
        .unwrap();

    let mut got = Vec::new();
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut receipts = 0;
    while receipts < 6 && Instant::now() < deadline {
        let batch = queue.poll().await.expect("poll");
        for e in &batch.events {
            engine.handle_event(e.event.clone(), Timestamp::from_secs(1_010));
            latencies.push(e.received_at.elapsed());
            got.push(e.event.clone());
        }
        receipts += batch.receipts.len();
        queue.ack(&batch.receipts).await.expect("ack");
    }
    let delivery = sent.elapsed();
    assert_eq!(receipts, 6, "5 events + 1 malformed message");
    assert_eq!(got.len(), 5, "{got:#?}");
    assert!(got.contains(&Event::LaunchFailed {
        group: "web-spot".into(),
        zone: Some("us-east-1a".into()),
        instance_type: Some("m5.xlarge".into()),
        reason: LaunchFailureReason::InsufficientInstanceCapacity,
    }));
    assert!(got.iter().any(|e| matches!(e,
        Event::InstanceInterruption { instance_id, kind: InterruptionKind::SpotInterruption, zone: Some(z), instance_type: Some(t), deadline: Some(_) }
            if *instance_id == od_instance.id && z == "us-east-1a" && *t == od_instance.instance_type)));
    for kind in [
        InterruptionKind::RebalanceRecommendation,
        InterruptionKind::StateChange,
        InterruptionKind::ScheduledChange,
    ] {
        assert!(
            got.iter()
                .any(|e| matches!(e, Event::InstanceInterruption { kind: k, .. } if *k == kind)),
            "{kind:?}"
        );
    }
    let stats = cloud.metrics().events();
    assert_eq!((stats.malformed, stats.delivered), (1, 5));
    let worst = latencies.iter().max().copied().unwrap_or_default();
    eprintln!(
        "event-to-core latency from SQS receipt: max {worst:?} over {} events; PutEvents -> all handled {delivery:?}",
        latencies.len()
    );
    assert!(
        worst < Duration::from_secs(1),
        "event-to-core latency {worst:?}"
    );
    assert!(stats.latency_micros_max < 1_000_000);

    // The core fails over to on-demand in the same round.
    let second = engine.decide(&snapshot, Timestamp::from_secs(1_010));
    assert!(
        matches!(&second.actions[0], Decision::RevertScaleUp { group, .. } if group == "web-spot"),
        "{:?}",
        second.actions
    );
    assert!(second
        .actions
        .iter()
        .any(|d| matches!(d, Decision::ScaleUp { group, .. } if group == "web-od")));

    // Everything was deleted: the queue is empty.
    let rest = queue.poll().await.unwrap();
    assert!(rest.receipts.is_empty(), "{rest:?}");

    // The second path: scaling activities of groups with a scale-up in flight (moto has
    // none to report; the call is made and counted).
    let in_flight_scan = cloud.scan().await.unwrap();
    let from_activities = cloud.poll_activities(&in_flight_scan).await;
    assert!(from_activities.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttles_and_5xx_are_retried_and_access_denied_names_the_action() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port).await;
    let sdk = sdk_config(&moto.endpoint());
    let raw = Raw::new(&sdk);
    let subnet = raw.subnet("us-east-1a").await;
    let lt = raw.launch_template("lt", "m5.large", false).await;
    plain_group(&raw, "g", &lt, &subnet, (0, 5, 1), &[]).await;
    let cloud = cloud(
        &proxy.endpoint(),
        vec![GroupSpec::parse_nodes("0:5:g").unwrap()],
    );

    proxy.inject(Fault::query(
        "DescribeAutoScalingGroups",
        400,
        "Throttling",
        2,
    ));
    proxy.inject(Fault::ec2(
        "DescribeInstanceTypes",
        503,
        "RequestLimitExceeded",
        1,
    ));
    proxy.inject(Fault::ec2(
        "DescribeLaunchTemplateVersions",
        500,
        "InternalError",
        1,
    ));
    let scan = cloud.scan().await.expect("scan succeeds after retries");
    assert_eq!(scan.groups.len(), 1);
    let m = cloud.metrics();
    let asg = m.op(Op::DescribeAutoScalingGroups);
    assert_eq!(
        (asg.calls, asg.attempts, asg.throttled_attempts, asg.errors),
        (1, 3, 2, 0)
    );
    let types = m.op(Op::DescribeInstanceTypes);
    assert_eq!(
        (types.calls, types.attempts, types.throttled_attempts),
        (1, 2, 1)
    );
    assert_eq!(m.op(Op::DescribeLaunchTemplateVersions).attempts, 2);
    assert_eq!(proxy.injected.lock().unwrap().len(), 4);

    // Throttled past the retries: a clear error, not a panic.
    proxy.inject(Fault::query(
        "DescribeAutoScalingGroups",
        400,
        "Throttling",
        10,
    ));
    let err = cloud.scan().await.unwrap_err();
    assert!(err.is_throttle(), "{err}");
    proxy.faults.lock().unwrap().clear();

    // AccessDenied names the missing IAM action.
    proxy.inject(Fault::query("SetDesiredCapacity", 403, "AccessDenied", 1));
    let out = cloud
        .apply(&[Decision::ScaleUp {
            group: "g".into(),
            delta: 1,
            new_target: 2,
            cause: ScaleUpCause::PendingPods,
            reason: "t".into(),
        }])
        .await;
    let Outcome::Failed { error, .. } = &out[0] else {
        panic!("{out:?}")
    };
    assert!(
        matches!(
            error,
            AwsError::AccessDenied {
                action: "autoscaling:SetDesiredCapacity",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("iam-policy.json"), "{error}");
    assert_eq!(
        (error.kind(), error.action()),
        ("access_denied", Some("autoscaling:SetDesiredCapacity"))
    );
    assert_eq!(raw.desired("g").await, 1);

    // A rejected request keeps its type too (not retried, not a string).
    proxy.inject(Fault::query(
        "SetDesiredCapacity",
        400,
        "ValidationError",
        1,
    ));
    let out = cloud
        .apply(&[Decision::ScaleUp {
            group: "g".into(),
            delta: 1,
            new_target: 2,
            cause: ScaleUpCause::PendingPods,
            reason: "t".into(),
        }])
        .await;
    let Outcome::Failed { error, .. } = &out[0] else {
        panic!("{out:?}")
    };
    assert!(
        matches!(error, AwsError::Validation { code, .. } if code == "ValidationError"),
        "{error:?}"
    );
    assert_eq!(error.kind(), "validation");

    // A group whose launch template cannot be read because of a missing permission is
    // reported with that typed error, and the scan goes on.
    cloud.refresh().await;
    proxy.inject(Fault::ec2(
        "DescribeLaunchTemplateVersions",
        403,
        "UnauthorizedOperation",
        1,
    ));
    let scan = cloud.scan().await.expect("the scan itself succeeds");
    assert!(scan.groups.is_empty());
    assert!(
        matches!(
            &scan.errors[0].problem,
            GroupProblem::Aws(AwsError::AccessDenied {
                action: "ec2:DescribeLaunchTemplateVersions",
                ..
            })
        ),
        "{:?}",
        scan.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_token_bucket_paces_calls() {
    let moto = Moto::start();
    let sdk = sdk_config(&moto.endpoint());
    let raw = Raw::new(&sdk);
    let subnet = raw.subnet("us-east-1a").await;
    let lt = raw.launch_template("lt", "m5.large", false).await;
    plain_group(&raw, "g", &lt, &subnet, (0, 5, 0), &[]).await;
    let mut config = AwsConfig {
        retry: fast_retry(),
        ..AwsConfig::default()
    };
    config.limits.autoscaling_read = autoscaler_aws::Bucket {
        burst: 1,
        per_second: 2,
    };
    config.scan.specs = vec![GroupSpec::parse_nodes("0:5:g").unwrap()];
    let cloud = AwsCloud::new(&sdk, config);
    let t = Instant::now();
    for _ in 0..5 {
        cloud.scan().await.unwrap();
    }
    // 5 DescribeAutoScalingGroups at 2/s with a burst of 1: at least 2 s.
    let elapsed = t.elapsed();
    assert!(elapsed >= Duration::from_millis(1900), "{elapsed:?}");
    let s = cloud.metrics().op(Op::DescribeAutoScalingGroups);
    assert_eq!(s.calls, 5);
    assert!(s.rate_limit_wait_micros >= 1_500_000, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_redelivers_what_was_not_acknowledged_and_forgets_what_was() {
    let moto = Moto::start();
    let sdk = sdk_config(&moto.endpoint());
    let raw = Raw::new(&sdk);
    let cloud = cloud(&moto.endpoint(), vec![GroupSpec::for_cluster("prod")]);
    let state = EventInfra::for_cluster("prod")
        .ensure(cloud.api())
        .await
        .expect("ensure rules and queue");
    let body = serde_json::json!({
        "version": "0", "id": "e-1", "source": "aws.ec2",
        "detail-type": "EC2 Spot Instance Interruption Warning",
        "account": "123456789012", "time": "2024-05-01T12:00:00Z", "region": "us-east-1",
        "resources": [], "detail": {"instance-id": "i-0abc", "instance-action": "terminate"}
    });
    raw.sqs
        .send_message()
        .queue_url(&state.queue_url)
        .message_body(body.to_string())
        .send()
        .await
        .unwrap();
    let queue = std::sync::Arc::new(cloud.event_queue(QueueConfig {
        wait: Duration::from_secs(1),
        visibility_timeout: Duration::from_secs(2),
        ..QueueConfig::new(&state.queue_url)
    }));
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let reader = tokio::spawn(queue.clone().run(tx));
    // Received, handed over, not deleted: it comes back after the visibility timeout
    // (a controller that died before its round).
    let wait = Duration::from_secs(15);
    let first = tokio::time::timeout(wait, rx.recv())
        .await
        .expect("first delivery")
        .unwrap();
    assert_eq!(first.events.len(), 1);
    let again = tokio::time::timeout(wait, rx.recv())
        .await
        .expect("redelivery")
        .unwrap();
    assert_eq!(again.events[0].message_id, first.events[0].message_id);
    assert_eq!(again.events[0].event, first.events[0].event);

    // Acknowledged after the round: gone for good.
    queue.ack(&again.receipts).await.expect("ack");
    let none = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
    assert!(none.is_err(), "deleted message delivered again: {none:?}");
    reader.abort();
}

/// A mixed-instances group over m5.large/m5a.large with the given on-demand split.
async fn mixed_group_with_split(raw: &Raw, name: &str, lt: &str, subnet: &str, split: (i32, i32)) {
    let overrides = ["m5.large", "m5a.large"]
        .map(|t| LaunchTemplateOverrides::builder().instance_type(t).build());
    raw.asg
        .create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .min_size(0)
        .max_size(10)
        .desired_capacity(2)
        .vpc_zone_identifier(subnet)
        .mixed_instances_policy(
            MixedInstancesPolicy::builder()
                .launch_template(
                    LaunchTemplate::builder()
                        .launch_template_specification(
                            LaunchTemplateSpecification::builder()
                                .launch_template_id(lt)
                                .version("$Latest")
                                .build(),
                        )
                        .set_overrides(Some(overrides.to_vec()))
                        .build(),
                )
                .instances_distribution(
                    InstancesDistribution::builder()
                        .on_demand_base_capacity(split.0)
                        .on_demand_percentage_above_base_capacity(split.1)
                        .spot_allocation_strategy("price-capacity-optimized")
                        .build(),
                )
                .build(),
        )
        .tags(tag(name, ENABLED, "true"))
        .tags(tag(name, CLUSTER, "owned"))
        .send()
        .await
        .expect("create mixed group");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_group_with_an_on_demand_base_is_discovered_with_its_split() {
    let moto = Moto::start();
    let sdk = sdk_config(&moto.endpoint());
    let raw = Raw::new(&sdk);
    let subnet = raw.subnet("us-east-1a").await;
    let lt = raw.launch_template("lt-od", "c5.xlarge", false).await;
    mixed_group_with_split(&raw, "base-2-half", &lt, &subnet, (2, 50)).await;
    mixed_group_with_split(&raw, "all-spot", &lt, &subnet, (0, 0)).await;
    mixed_group_with_split(&raw, "all-on-demand", &lt, &subnet, (3, 100)).await;

    let cloud = cloud(
        &moto.endpoint(),
        vec![GroupSpec::parse_auto_discovery(&format!("asg:tag={ENABLED},{CLUSTER}")).unwrap()],
    );
    let scan = cloud.scan().await.expect("scan");
    let group = |name: &str| {
        &scan
            .groups
            .iter()
            .find(|g| g.group.name == name)
            .unwrap_or_else(|| panic!("{name} not discovered: {:?}", scan.errors))
            .group
    };
    let mixed = group("base-2-half");
    assert_eq!(
        mixed.mix,
        Some(autoscaler_core::CapacityMix {
            on_demand_base: 2,
            on_demand_percentage_above_base: 50,
        })
    );
    assert_eq!(
        mixed.capacity_type,
        CapacityType::Spot,
        "the part above the base"
    );
    for t in &mixed.instance_types {
        let od = t.price_in(CapacityType::OnDemand);
        assert!(
            od > t.price_in(CapacityType::Spot),
            "{}: both prices, on-demand above spot ({od} vs {})",
            t.name,
            t.price_per_hour
        );
    }
    // Groups that run one market keep the single-market model.
    assert_eq!(group("all-spot").mix, None);
    assert_eq!(group("all-spot").capacity_type, CapacityType::Spot);
    assert_eq!(group("all-on-demand").mix, None);
    assert_eq!(group("all-on-demand").capacity_type, CapacityType::OnDemand);

    // Only the group that runs both markets has its instances' markets looked up: moto
    // launches on-demand only, and that is what DescribeInstances reports for them.
    let instances = |name: &str| {
        scan.groups
            .iter()
            .find(|g| g.group.name == name)
            .map(|g| g.instances.clone())
            .unwrap_or_default()
    };
    assert!(!instances("base-2-half").is_empty());
    assert!(instances("base-2-half")
        .iter()
        .all(|i| i.lifecycle == Some(CapacityType::OnDemand)));
    assert!(instances("all-spot")
        .iter()
        .all(|i| i.lifecycle == Some(CapacityType::Spot)));
    assert_eq!(cloud.metrics().op(Op::DescribeInstances).calls, 1);
}
