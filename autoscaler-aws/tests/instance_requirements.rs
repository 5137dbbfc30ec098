//! Attribute-based instance selection (`InstanceRequirements` in the mixed-instances
//! overrides) with the real SDK clients against moto.
//!
//! moto 5.2.1 stores and returns the requirements but does not implement
//! `GetInstanceTypesFromInstanceRequirements` ("has not been implemented"). The fault
//! proxy in front of moto answers that one action with an AWS-shaped XML answer: this
//! stands in for AWS, not for our code; the adapter's real SDK call, its serialization
//! of the requirements and the parsing of the answer all run. Every other call
//! (groups, launch template versions, `DescribeImages`, `DescribeInstanceTypes`) is
//! moto's.

mod common;

use autoscaler_aws::{AwsCloud, AwsConfig, AwsError, GroupProblem, GroupSpec, RetrySettings};
use aws_sdk_autoscaling::types::{
    InstanceRequirements, InstancesDistribution, LaunchTemplate, LaunchTemplateOverrides,
    LaunchTemplateSpecification, MemoryMiBRequest, MixedInstancesPolicy, VCpuCountRequest,
};
use aws_sdk_ec2::types::RequestLaunchTemplateData;
use common::{sdk_config, tag, Fault, FaultProxy, Moto, Raw};
use std::time::Duration;

const RESOLVE: &str = "GetInstanceTypesFromInstanceRequirements";

/// What EC2 answers for the requirements below (the type set is AWS's shape, the
/// names are types moto's `DescribeInstanceTypes` knows).
fn resolve_answer(types: &[&str]) -> String {
    let items: String = types
        .iter()
        .map(|t| format!("<item><instanceType>{t}</instanceType></item>"))
        .collect();
    format!(
        "<GetInstanceTypesFromInstanceRequirementsResponse \
         xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
         <requestId>proxy</requestId><instanceTypeSet>{items}</instanceTypeSet>\
         </GetInstanceTypesFromInstanceRequirementsResponse>"
    )
}

/// A launch template without an instance type (the overrides' requirements choose).
async fn template(raw: &Raw, name: &str) -> String {
    raw.ec2
        .create_launch_template()
        .launch_template_name(name)
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id("ami-12c6146b")
                .build(),
        )
        .send()
        .await
        .expect("create launch template")
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .expect("template id")
        .to_string()
}

/// A spot mixed-instances group choosing 2-4 vCPUs, at least 4 GiB, by attributes.
async fn attribute_group(raw: &Raw, name: &str, lt: &str, subnet: &str) {
    raw.asg
        .create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .min_size(0)
        .max_size(10)
        .desired_capacity(0)
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
                                .instance_requirements(
                                    InstanceRequirements::builder()
                                        .v_cpu_count(
                                            VCpuCountRequest::builder().min(2).max(4).build(),
                                        )
                                        .memory_mib(MemoryMiBRequest::builder().min(4096).build())
                                        .build(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .instances_distribution(
                    InstancesDistribution::builder()
                        .on_demand_percentage_above_base_capacity(0)
                        .build(),
                )
                .build(),
        )
        .tags(tag(name, "k8s.io/cluster-autoscaler/enabled", "true"))
        .send()
        .await
        .expect("create attribute-based group");
}

fn cloud(endpoint: &str, template_ttl: Duration) -> AwsCloud {
    let mut config = AwsConfig {
        retry: RetrySettings {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        },
        ..AwsConfig::default()
    };
    config.scan.specs = vec![GroupSpec::Tags(vec![(
        "k8s.io/cluster-autoscaler/enabled".into(),
        None,
    )])];
    config.scan.template_ttl = template_ttl;
    AwsCloud::new(&sdk_config(endpoint), config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribute_based_group_is_resolved_once_per_template_version() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port).await;
    let raw = Raw::new(&sdk_config(&moto.endpoint()));
    let subnet = raw.subnet("us-east-1a").await;
    let lt = template(&raw, "lt-abis").await;
    attribute_group(&raw, "abis-spot", &lt, &subnet).await;
    proxy.inject(Fault::ec2_answer(
        RESOLVE,
        resolve_answer(&["m5.large", "c5.xlarge", "m5a.xlarge"]),
    ));
    // TTL 0: `$Latest` is re-read every scan, so a new version shows at once.
    let cloud = cloud(&proxy.endpoint(), Duration::ZERO);

    let scan = cloud.scan().await.expect("scan");
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    let group = &scan.group("abis-spot").expect("group discovered").group;
    let mut types: Vec<(&str, u32, u64)> = group
        .instance_types
        .iter()
        .map(|t| (t.name.as_str(), t.vcpus, t.memory_mib))
        .collect();
    types.sort();
    // vCPUs and memory as moto's DescribeInstanceTypes gives them.
    assert_eq!(
        types,
        [
            ("c5.xlarge", 4, 8192),
            ("m5.large", 2, 8192),
            ("m5a.xlarge", 4, 16384)
        ]
    );
    assert_eq!(group.capacity_type, autoscaler_core::CapacityType::Spot);
    assert_eq!(proxy.answered(RESOLVE), 1);
    let request = proxy.answered_bodies.lock().unwrap()[0].clone();
    for sent in [
        "InstanceRequirements.VCpuCount.Min=2",
        "InstanceRequirements.VCpuCount.Max=4",
        "InstanceRequirements.MemoryMiB.Min=4096",
        "ArchitectureType.1=x86_64",
        "VirtualizationType.1=hvm",
    ] {
        assert!(request.contains(sent), "{sent} not in {request}");
    }

    // Same template version: no second resolve call.
    let again = cloud.scan().await.expect("second scan");
    assert_eq!(
        again.group("abis-spot").unwrap().group.instance_types.len(),
        3
    );
    assert_eq!(proxy.answered(RESOLVE), 1, "the second scan resolved again");

    // A new template version: resolved again, and the new answer is used.
    raw.ec2
        .create_launch_template_version()
        .launch_template_id(&lt)
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id("ami-12c6146b")
                .build(),
        )
        .send()
        .await
        .expect("new template version");
    proxy.clear();
    proxy.inject(Fault::ec2_answer(RESOLVE, resolve_answer(&["m5.large"])));
    let changed = cloud.scan().await.expect("scan after template change");
    let names: Vec<&str> = changed
        .group("abis-spot")
        .unwrap()
        .group
        .instance_types
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names, ["m5.large"]);
    assert_eq!(
        proxy.answered(RESOLVE),
        2,
        "the template change did not resolve again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_resolve_skips_the_group_naming_the_iam_action() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port).await;
    let raw = Raw::new(&sdk_config(&moto.endpoint()));
    let subnet = raw.subnet("us-east-1a").await;
    let lt = template(&raw, "lt-denied").await;
    attribute_group(&raw, "abis-denied", &lt, &subnet).await;
    proxy.inject(Fault::ec2(RESOLVE, 403, "UnauthorizedOperation", u32::MAX));
    let scan = cloud(&proxy.endpoint(), Duration::from_secs(600))
        .scan()
        .await
        .expect("the scan itself goes on");
    assert!(scan.group("abis-denied").is_none());
    let problem = &scan
        .errors
        .iter()
        .find(|e| e.group == "abis-denied")
        .expect("the group's problem is reported")
        .problem;
    assert!(
        matches!(
            problem,
            GroupProblem::Aws(AwsError::AccessDenied { action, .. })
                if *action == "ec2:GetInstanceTypesFromInstanceRequirements"
        ),
        "{problem:?}"
    );
}
