//! Measured: AWS calls per scan for 50 ASGs / 5,000 instances, against moto.

mod common;

use autoscaler_aws::{AwsCloud, AwsConfig, GroupSpec, Op};
use aws_sdk_autoscaling::types::{
    InstancesDistribution, LaunchTemplate, LaunchTemplateOverrides, LaunchTemplateSpecification,
    MixedInstancesPolicy,
};
use common::{sdk_config, tag, Moto, Raw};
use std::time::{Duration, Instant};

const GROUPS: usize = 50;
const PER_GROUP: i32 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_per_scan_for_50_groups_and_5000_instances() {
    let moto = Moto::start();
    let sdk = sdk_config(&moto.endpoint());
    let raw = Raw::new(&sdk);
    // A default subnet has ~4,000 addresses: spread the groups over two zones.
    let subnets = [
        raw.subnet("us-east-1a").await,
        raw.subnet("us-east-1b").await,
    ];
    let lt = raw.launch_template("lt", "m5.large", false).await;
    let started = Instant::now();
    let overrides = [
        "m5.large",
        "m5a.large",
        "m6i.large",
        "c5.xlarge",
        "r5.large",
        "m5.xlarge",
    ];
    for i in 0..GROUPS {
        let name = format!("pool-{i:02}");
        let spec = LaunchTemplateSpecification::builder()
            .launch_template_id(&lt)
            .version("$Latest")
            .build();
        let mut req = raw
            .asg
            .create_auto_scaling_group()
            .auto_scaling_group_name(&name)
            .min_size(0)
            .max_size(200)
            .desired_capacity(PER_GROUP)
            .vpc_zone_identifier(&subnets[i % 2])
            .tags(tag(&name, "k8s.io/cluster-autoscaler/enabled", "true"))
            .tags(tag(&name, "k8s.io/cluster-autoscaler/prod", "owned"));
        req = if i % 2 == 0 {
            // Half the groups: mixed instances, 25 % on-demand, three overrides each.
            let mut lt_block = LaunchTemplate::builder().launch_template_specification(spec);
            for t in overrides.iter().cycle().skip(i % overrides.len()).take(3) {
                lt_block = lt_block
                    .overrides(LaunchTemplateOverrides::builder().instance_type(*t).build());
            }
            req.mixed_instances_policy(
                MixedInstancesPolicy::builder()
                    .launch_template(lt_block.build())
                    .instances_distribution(
                        InstancesDistribution::builder()
                            .on_demand_percentage_above_base_capacity(25)
                            .build(),
                    )
                    .build(),
            )
        } else {
            req.launch_template(spec)
        };
        req.send().await.expect("create group");
    }
    eprintln!(
        "fixture: {GROUPS} groups x {PER_GROUP} instances created in {:?}",
        started.elapsed()
    );

    let mut config = AwsConfig::default();
    config.scan.specs.push(GroupSpec::for_cluster("prod"));
    // moto answers a DescribeInstances in seconds at this size here (AWS: well under a
    // second); the default per-call limits are for AWS.
    config.timeouts = autoscaler_aws::TimeoutSettings {
        attempt: Duration::from_secs(300),
        operation: Duration::from_secs(600),
    };
    let cloud = AwsCloud::new(&sdk, config);

    let t = Instant::now();
    let first = cloud.scan().await.expect("first scan");
    let first_time = t.elapsed();
    assert_eq!(first.groups.len(), GROUPS, "{:?}", first.errors);
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    let instances: usize = first.groups.iter().map(|g| g.instances.len()).sum();
    assert_eq!(instances, GROUPS * PER_GROUP as usize);
    assert!(first
        .groups
        .iter()
        .all(|g| g.instances.iter().all(|i| i.lifecycle.is_some())));
    let m = cloud.metrics();
    let per_op = |name| {
        Op::ALL
            .iter()
            .filter(|o| o.is_control_plane())
            .map(|&o| {
                format!(
                    "{}={} ({} ms)",
                    o.action(),
                    m.op(o).calls,
                    m.op(o).latency_micros_sum / 1000
                )
            })
            .filter(|s| !s.contains("=0 "))
            .collect::<Vec<_>>()
            .join(", ")
            + name
    };
    eprintln!(
        "first scan: {} AWS calls in {first_time:?} ({})",
        first.aws_calls,
        per_op("")
    );

    let mut steady = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let s = cloud.scan().await.expect("scan");
        steady.push((s.aws_calls, t.elapsed()));
    }
    eprintln!("steady-state scans (calls, time): {steady:?}");
    // First scan: 1 DescribeAutoScalingGroups page (50 groups <= 100 per page), 1
    // DescribeInstanceTypes (all distinct types), 1 DescribeLaunchTemplateVersions (the one
    // template of the plain groups), 1 DescribeSpotPriceHistory, and DescribeInstances
    // for the 2,500 new instances of the mixed groups (the others run one market), 200
    // ids a call.
    let mixed = GROUPS.div_ceil(2) * PER_GROUP as usize;
    let by_id = mixed.div_ceil(autoscaler_aws::discovery::INSTANCE_IDS_PER_CALL);
    assert_eq!(m.op(Op::DescribeInstances).calls as usize, by_id);
    assert!(
        first.aws_calls as usize <= 4 + by_id,
        "first scan made {} calls",
        first.aws_calls
    );
    assert_eq!(m.op(Op::DescribeInstanceTypes).calls, 1);
    // Then one call per scan.
    assert!(steady.iter().all(|(calls, _)| *calls == 1), "{steady:?}");
}
