//! Actuation's compare-and-set base against moto: the round's scan while it is young,
//! a fresh `DescribeAutoScalingGroups` of just the changed groups otherwise.
//! Each test starts its own moto server (and fails if it cannot).

mod common;

use autoscaler_aws::{ActuationConfig, AwsCloud, AwsConfig, GroupSpec, Op, Outcome, RetrySettings};
use autoscaler_core::{Decision, ScaleUpCause};
use aws_sdk_autoscaling::types::LaunchTemplateSpecification;
use common::{sdk_config, Fault, FaultProxy, Moto, Raw};
use std::time::Duration;

fn cloud(endpoint: &str, max_view_age: Duration) -> AwsCloud {
    let mut config = AwsConfig {
        retry: RetrySettings {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        },
        actuation: ActuationConfig { max_view_age },
        ..AwsConfig::default()
    };
    config.scan.specs = vec![GroupSpec::parse_nodes("0:10:g").unwrap()];
    AwsCloud::new(&sdk_config(endpoint), config)
}

/// Group `g`: min 0, max 10, desired 2, one zone.
async fn group_g(raw: &Raw) {
    let subnet = raw.subnet("us-east-1a").await;
    let lt = raw.launch_template("lt", "m5.large", false).await;
    raw.asg
        .create_auto_scaling_group()
        .auto_scaling_group_name("g")
        .min_size(0)
        .max_size(10)
        .desired_capacity(2)
        .vpc_zone_identifier(subnet)
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_id(lt)
                .version("$Latest")
                .build(),
        )
        .send()
        .await
        .expect("create group g");
}

async fn set_desired_as_someone_else(raw: &Raw, desired: i32) {
    raw.asg
        .set_desired_capacity()
        .auto_scaling_group_name("g")
        .desired_capacity(desired)
        .send()
        .await
        .expect("external SetDesiredCapacity");
}

fn up(delta: u32, new_target: u32) -> Decision {
    Decision::ScaleUp {
        group: "g".into(),
        delta,
        new_target,
        cause: ScaleUpCause::PendingPods,
        reason: "test".into(),
    }
}

fn describes(cloud: &AwsCloud) -> u64 {
    cloud.metrics().op(Op::DescribeAutoScalingGroups).calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_young_scan_is_the_base_and_our_own_writes_are_still_checked() {
    let moto = Moto::start();
    let raw = Raw::new(&sdk_config(&moto.endpoint()));
    group_g(&raw).await;
    let cloud = cloud(&moto.endpoint(), Duration::from_secs(600));
    cloud.scan().await.expect("scan");
    let after_scan = describes(&cloud);

    assert_eq!(
        cloud.apply(&[up(1, 3)]).await,
        [Outcome::Applied {
            group: "g".into(),
            from: 2,
            to: 3
        }]
    );
    assert_eq!(raw.desired("g").await, 3);
    assert_eq!(
        describes(&cloud),
        after_scan,
        "no DescribeAutoScalingGroups between the scan and the write"
    );
    // The view follows our own write: a retry is recognised, and a decision from the
    // old base is a conflict, not a second write.
    assert_eq!(
        cloud.apply(&[up(1, 3)]).await,
        [Outcome::AlreadyApplied {
            group: "g".into(),
            desired: 3
        }]
    );
    let stale_revert = Decision::RevertScaleUp {
        group: "g".into(),
        cancelled: 1,
        new_target: 1,
        reason: "ICE".into(),
    };
    assert_eq!(
        cloud.apply(&[stale_revert]).await,
        [Outcome::Conflict {
            group: "g".into(),
            expected: 2,
            actual: 3
        }]
    );
    assert_eq!(raw.desired("g").await, 3, "the conflict wrote nothing");
    assert_eq!(describes(&cloud), after_scan);

    // A group the scan does not manage is read fresh (one call) and reported unknown.
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
        matches!(&out[0], Outcome::Failed { target, .. } if target == "nope"),
        "{out:?}"
    );
    assert_eq!(describes(&cloud), after_scan + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_elses_change_is_caught_once_the_scan_is_too_old() {
    let moto = Moto::start();
    let raw = Raw::new(&sdk_config(&moto.endpoint()));
    group_g(&raw).await;
    let cloud = cloud(&moto.endpoint(), Duration::from_millis(300));
    cloud.scan().await.expect("scan");
    // Lowered (a raise to 3 or more would make our scale-up to 3 look applied).
    set_desired_as_someone_else(&raw, 1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    let before = describes(&cloud);
    assert_eq!(
        cloud.apply(&[up(1, 3)]).await,
        [Outcome::Conflict {
            group: "g".into(),
            expected: 2,
            actual: 1
        }]
    );
    assert_eq!(describes(&cloud), before + 1, "one fresh read of the group");
    assert_eq!(raw.desired("g").await, 1, "their change stands");
    assert_eq!(cloud.metrics().external_changes(), 1);

    // With the view off (age zero), a change right after the scan is caught too.
    let strict = self::cloud(&moto.endpoint(), Duration::ZERO);
    strict.scan().await.expect("scan");
    set_desired_as_someone_else(&raw, 0).await;
    assert_eq!(
        strict.apply(&[up(1, 2)]).await,
        [Outcome::Conflict {
            group: "g".into(),
            expected: 1,
            actual: 0
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_write_the_group_is_read_fresh() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port).await;
    let raw = Raw::new(&sdk_config(&moto.endpoint()));
    group_g(&raw).await;
    let cloud = cloud(&proxy.endpoint(), Duration::from_secs(600));
    cloud.scan().await.expect("scan");

    proxy.inject(Fault::query(
        "SetDesiredCapacity",
        500,
        "InternalFailure",
        10,
    ));
    let out = cloud.apply(&[up(1, 3)]).await;
    assert!(
        matches!(&out[0], Outcome::Failed { target, .. } if target == "g"),
        "{out:?}"
    );
    proxy.clear();

    // We cannot know whether it landed: the next attempt reads the group first.
    let before = describes(&cloud);
    assert_eq!(
        cloud.apply(&[up(1, 3)]).await,
        [Outcome::Applied {
            group: "g".into(),
            from: 2,
            to: 3
        }]
    );
    assert_eq!(describes(&cloud), before + 1);
}

/// A scan that started before our write and ended after it (a background refresh
/// overlapping a round) read the old size: our write is laid over it, so a revert that
/// follows is checked against what AWS really has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_that_overlapped_our_write_does_not_undo_it() {
    let moto = Moto::start();
    let raw = Raw::new(&sdk_config(&moto.endpoint()));
    group_g(&raw).await;
    let cloud = cloud(&moto.endpoint(), Duration::from_secs(600));
    let actuator = autoscaler_aws::Actuator::new(cloud.api().clone())
        .with_max_view_age(Duration::from_secs(600));
    let before_write = cloud.scan().await.expect("scan");
    actuator.remember_scan(&before_write, std::time::Instant::now());
    let overlapping_started = std::time::Instant::now();
    assert_eq!(
        actuator.apply(&[up(1, 3)]).await,
        [Outcome::Applied {
            group: "g".into(),
            from: 2,
            to: 3
        }]
    );
    // The overlapping scan says 2 (it read AWS before the write) and lands now.
    actuator.remember_scan(&before_write, overlapping_started);
    let revert = Decision::RevertScaleUp {
        group: "g".into(),
        cancelled: 1,
        new_target: 2,
        reason: "ICE".into(),
    };
    assert_eq!(
        actuator.apply(&[revert]).await,
        [Outcome::Applied {
            group: "g".into(),
            from: 3,
            to: 2
        }],
        "the revert is checked against our write, not the overlapping scan's 2"
    );
    assert_eq!(raw.desired("g").await, 2);
    // An older scan landing after a newer one is not kept.
    set_desired_as_someone_else(&raw, 5).await;
    let newer_started = std::time::Instant::now();
    let newer = cloud.scan().await.expect("scan");
    actuator.remember_scan(&newer, newer_started);
    actuator.remember_scan(&before_write, overlapping_started);
    assert_eq!(
        actuator.apply(&[up(1, 6)]).await,
        [Outcome::Applied {
            group: "g".into(),
            from: 5,
            to: 6
        }],
        "the newer scan's 5 is the base"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_slower_than_the_view_age_still_serves_the_write_after_it() {
    // The view's age counts from the scan's return: a describe slower than the age (moto
    // with 5,000 instances on a busy machine: 6 s) made every write read its group again.
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port).await;
    let raw = Raw::new(&sdk_config(&moto.endpoint()));
    group_g(&raw).await;
    let age = Duration::from_secs(1);
    let cloud = cloud(&proxy.endpoint(), age);
    proxy.inject(Fault::delay(
        "DescribeAutoScalingGroups",
        age + Duration::from_millis(500),
        1,
    ));
    cloud.scan().await.expect("scan");
    let after_scan = describes(&cloud);
    assert_eq!(
        cloud.apply(&[up(1, 3)]).await,
        [Outcome::Applied {
            group: "g".into(),
            from: 2,
            to: 3
        }]
    );
    assert_eq!(describes(&cloud), after_scan, "no second read of the group");
    assert_eq!(raw.desired("g").await, 3);
}
