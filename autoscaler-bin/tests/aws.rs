//! End-to-end with `--cloud-provider=aws`: the real `autoscaler` binary against a real
//! control plane (tests/e2e/controlplane.sh, shared by this file's tests) and a moto
//! server (started here; the test panics when `moto_server` is missing, never skips).
//!
//! Two one-zone ASGs found by CA's auto-discovery tags, `asg-a` (spot launch template,
//! priority 50) and `asg-b` (on-demand, priority 10). A pending pod raises asg-a's
//! desired capacity in moto; an "EC2 Instance Launch Unsuccessful" ICE event for asg-a
//! sent to the SQS queue of `--event-queue-url` makes the autoscaler revert asg-a and
//! scale asg-b.
//!
//! moto gap: instances start at once, so at the revert moto has asg-a's instance in
//! service and the adapter (rightly) never sets the desired capacity below the instances
//! AWS has: the revert is asserted from the log (the decision and the adapter's clamped
//! outcome), not from moto's desired capacity.
//!
//! Run: `cargo test -p autoscaler-bin --test aws -- --nocapture` (prints the latencies).

#![allow(clippy::await_holding_lock)]

mod harness;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag};
use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};
use aws_smithy_async::time::{SharedTimeSource, SystemTimeSource};
use aws_types::region::Region;
use aws_types::SdkConfig;
use harness::*;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, PostParams};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CLUSTER_TAG: &str = "k8s.io/cluster-autoscaler/e2e-aws";
const ENABLED_TAG: &str = "k8s.io/cluster-autoscaler/enabled";

/// A `moto_server` on 127.0.0.1, killed on drop (as autoscaler-aws/tests/common).
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free port on 127.0.0.1");
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start moto_server ({e}); install it with: pip install 'moto[server]' \
                     (this test needs it and never skips)"
                )
            });
        let mut moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited at start with {status}");
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let req = format!(
                    "GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
                );
                let mut buf = [0u8; 16];
                if s.write_all(req.as_bytes()).is_ok() && matches!(s.read(&mut buf), Ok(n) if n > 0)
                {
                    return moto;
                }
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on port {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SDK configuration with dummy credentials, read from nothing in the environment.
fn sdk_config(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "static",
        )))
        .endpoint_url(endpoint)
        .behavior_version(aws_config::BehaviorVersion::latest())
        .sleep_impl(SharedAsyncSleep::new(TokioSleep::new()))
        .time_source(SharedTimeSource::new(SystemTimeSource::new()))
        .build()
}

fn tag(group: &str, key: &str, value: &str) -> Tag {
    Tag::builder()
        .resource_id(group)
        .resource_type("auto-scaling-group")
        .key(key)
        .value(value)
        .propagate_at_launch(false)
        .build()
}

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

/// Pending pod -> asg-a (priority) scaled in moto; ICE on asg-a via SQS -> asg-b scaled,
/// asg-a reverted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_scale_up_then_ice_fails_over() {
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
    for (name, spot) in [("asg-a", true), ("asg-b", false)] {
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

    let (cp, _serial) = shared();
    let client = cp.client().await;
    let ns = "e2e-aws";
    namespace(&client, ns).await;
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "cluster-autoscaler-priority-expander"},
        "data": {"priorities": "50:\n  - ^asg-a$\n10:\n  - ^asg-b$\n"}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &cm)
        .await
        .expect("create priority ConfigMap");

    let args: Vec<String> = vec![
        "--cloud-provider=aws".to_string(),
        format!("--aws-endpoint-url={}", moto.endpoint()),
        "--aws-region=us-east-1".to_string(),
        format!("--node-group-auto-discovery=asg:tag={ENABLED_TAG},{CLUSTER_TAG}"),
        "--expander=priority".to_string(),
        format!("--event-queue-url={queue_url}"),
        format!("--namespace={ns}"),
        "--leader-elect=false".to_string(),
        "--scan-interval=1s".to_string(),
        "--metrics-address=127.0.0.1:0".to_string(),
    ];
    let env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
    ];
    let mut asc = Autoscaler::start(cp, "aws", &args, &env);
    // Settled: the priorities are loaded and a round saw both groups.
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
    assert_eq!(
        (desired(&asg, "asg-a").await, desired(&asg, "asg-b").await),
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
    wait_desired(&asg, "asg-a", 1).await;
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
    assert_eq!(desired(&asg, "asg-b").await, 0, "only asg-a is scaled");
    asc.assert_running();

    // ICE for asg-a, as EventBridge delivers it to the queue.
    let body = serde_json::json!({
        "version": "0",
        "id": "7f6c1c2e-0000-4000-8000-000000000001",
        "detail-type": "EC2 Instance Launch Unsuccessful",
        "source": "aws.autoscaling",
        "account": "123456789012",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "StatusCode": "Failed", "AutoScalingGroupName": "asg-a", "ActivityId": "a-1",
            "Details": {"Availability Zone": "us-east-1a", "Subnet ID": subnet},
            "StatusMessage": "We currently do not have sufficient m5.large capacity in the Availability Zone you requested (us-east-1a). Our system will be working on provisioning additional capacity.",
            "Cause": "At 2024-05-01T12:00:00Z an instance was started in response to a difference between desired and actual capacity"
        }
    });
    let sent = Instant::now();
    sqs.send_message()
        .queue_url(&queue_url)
        .message_body(body.to_string())
        .send()
        .await
        .expect("send ICE event");
    wait_desired(&asg, "asg-b", 1).await;
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
    asc.assert_running();
    drop(asc);
    cleanup(&client, ns, "asg-a").await;
}
