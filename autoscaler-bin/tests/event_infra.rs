//! `autoscaler event-infra ensure|verify`: the real binary against a moto server (started
//! here; the test panics when `moto_server` is missing, never skips), checked with the
//! real SQS and EventBridge clients.

#[path = "../../autoscaler-aws/tests/common/mod.rs"]
mod moto;

use moto::{sdk_config, Moto, AWS_ENV};
use std::process::{Command, Output};

fn event_infra(moto: &Moto, action: &str) -> (i32, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_autoscaler"))
        .args([
            "event-infra",
            action,
            "--cluster",
            "prod",
            "--aws-region",
            "us-east-1",
        ])
        .args(["--aws-endpoint-url", &moto.endpoint()])
        .envs(AWS_ENV)
        .output()
        .expect("run the autoscaler binary");
    let out = String::from_utf8_lossy(&stdout).into_owned();
    eprintln!(
        "event-infra {action}: {status}\n{out}{}",
        String::from_utf8_lossy(&stderr)
    );
    (status.code().unwrap_or(-1), out)
}

#[tokio::test]
async fn event_infra_creates_what_verify_then_finds_in_place() {
    let moto = Moto::start();

    let (code, out) = event_infra(&moto, "verify");
    assert_eq!(code, 1, "nothing exists yet: verify reports it\n{out}");
    assert!(
        out.contains("problem: queue prod-autoscaler-events"),
        "{out}"
    );
    assert!(
        out.contains("fix: run `autoscaler event-infra ensure --cluster prod`"),
        "{out}"
    );

    let (code, out) = event_infra(&moto, "ensure");
    assert_eq!(code, 0, "{out}");
    let url = out
        .lines()
        .find_map(|l| l.strip_prefix("--event-queue-url="))
        .unwrap_or_else(|| panic!("ensure prints the flag to pass: {out}"))
        .to_string();

    // What ensure made, read back with the SDK rather than with our own verify.
    let sdk = sdk_config(&moto.endpoint());
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let found = sqs
        .get_queue_url()
        .queue_name("prod-autoscaler-events")
        .send()
        .await
        .expect("the queue exists");
    assert_eq!(found.queue_url(), Some(url.as_str()));
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let rules = events
        .list_rules()
        .name_prefix("prod-autoscaler-")
        .send()
        .await
        .unwrap();
    let names: Vec<&str> = rules.rules().iter().filter_map(|r| r.name()).collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(
        names.contains(&"prod-autoscaler-spot-interruption"),
        "{names:?}"
    );

    let (code, out) = event_infra(&moto, "verify");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok: queue prod-autoscaler-events"), "{out}");
    let (code, again) = event_infra(&moto, "ensure");
    assert_eq!(code, 0, "ensure is idempotent\n{again}");
    assert!(
        again.contains(&format!("--event-queue-url={url}")),
        "{again}"
    );
}
