//! Every AWS call has a time limit: a hung endpoint (the fault proxy reads the request
//! and never answers) fails the call, and so the round, instead of blocking it.

mod common;

use autoscaler_aws::api::TimeoutSettings;
use autoscaler_aws::{
    Api, AwsError, GroupSpec, Metrics, Op, RateLimitConfig, RetrySettings, ScanConfig, Scanner,
};
use common::{sdk_config, tag, Fault, FaultProxy, Moto, Raw};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_endpoint_fails_the_call_instead_of_blocking_it() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port).await;
    let raw = Raw::new(&sdk_config(&moto.endpoint()));
    let subnet = raw.subnet("us-east-1a").await;
    let lt = raw.launch_template("lt-hang", "m5.large", false).await;
    raw.asg
        .create_auto_scaling_group()
        .auto_scaling_group_name("hang")
        .min_size(0)
        .max_size(3)
        .desired_capacity(0)
        .vpc_zone_identifier(&subnet)
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_id(lt)
                .version("$Latest")
                .build(),
        )
        .tags(tag("hang", "k8s.io/cluster-autoscaler/enabled", "true"))
        .send()
        .await
        .expect("create group");

    let api = Arc::new(Api::with_timeouts(
        &sdk_config(&proxy.endpoint()),
        RateLimitConfig::default(),
        RetrySettings {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        },
        TimeoutSettings {
            attempt: Duration::from_millis(500),
            operation: Duration::from_secs(2),
        },
        Arc::new(Metrics::default()),
    ));
    let scanner = Scanner::new(
        api.clone(),
        ScanConfig {
            specs: vec![GroupSpec::Tags(vec![(
                "k8s.io/cluster-autoscaler/enabled".into(),
                None,
            )])],
            ..ScanConfig::default()
        },
    );

    proxy.inject(Fault::hold("DescribeAutoScalingGroups", u32::MAX));
    // The outer limit only catches a call with no time limit at all.
    let result = tokio::time::timeout(Duration::from_secs(30), scanner.scan())
        .await
        .expect("the scan blocked on a hung endpoint: no per-call timeout");
    match result {
        Err(AwsError::Transport { action, .. }) => {
            assert_eq!(action, "autoscaling:DescribeAutoScalingGroups")
        }
        other => panic!("expected a transport error naming the action, got {other:?}"),
    }
    // Both attempts were held (the attempt limit, then a retry), then the call failed.
    assert_eq!(proxy.answered("DescribeAutoScalingGroups"), 2);
    let stats = api.metrics().op(Op::DescribeAutoScalingGroups);
    assert_eq!((stats.calls, stats.errors), (1, 1));

    // The endpoint answers again: the next scan works.
    proxy.clear();
    let scan = scanner
        .scan()
        .await
        .expect("scan after the endpoint recovered");
    assert!(scan.group("hang").is_some());
}
