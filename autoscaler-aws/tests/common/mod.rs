//! Test harness: a moto server per test, the SDK configured hermetically against it, and
//! a small fault-injecting HTTP proxy for throttling, 5xx and AccessDenied answers.
#![allow(dead_code)]

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};
use aws_smithy_async::time::{SharedTimeSource, SystemTimeSource};
use aws_types::region::Region;
use aws_types::SdkConfig;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A `moto_server` on 127.0.0.1, killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    /// Starts `moto_server -H 127.0.0.1 -p <free port>` and waits until it answers.
    /// Panics loudly when moto is missing: these tests never skip.
    pub fn start() -> Moto {
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
                     (these integration tests need it and never skip)"
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

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Environment for a child process (the autoscaler binary) talking to moto: dummy
/// credentials and no shared config, so nothing from the machine leaks in.
pub const AWS_ENV: [(&str, &str); 5] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_CONFIG_FILE", "/nonexistent"),
    ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
];

/// SDK configuration with dummy credentials, a fixed region and the endpoint, read from
/// nothing in the environment.
pub fn sdk_config(endpoint: &str) -> SdkConfig {
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

/// Raw SDK clients for fixtures (not the adapter's).
pub struct Raw {
    pub asg: aws_sdk_autoscaling::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub events: aws_sdk_eventbridge::Client,
}

impl Raw {
    pub fn new(sdk: &SdkConfig) -> Raw {
        Raw {
            asg: aws_sdk_autoscaling::Client::new(sdk),
            ec2: aws_sdk_ec2::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            events: aws_sdk_eventbridge::Client::new(sdk),
        }
    }

    /// A launch template with `instance_type` (spot market if `spot`).
    pub async fn launch_template(&self, name: &str, instance_type: &str, spot: bool) -> String {
        use aws_sdk_ec2::types::{
            InstanceType, LaunchTemplateInstanceMarketOptionsRequest, MarketType,
            RequestLaunchTemplateData,
        };
        let mut data = RequestLaunchTemplateData::builder()
            .image_id("ami-12c6146b")
            .instance_type(InstanceType::from(instance_type));
        if spot {
            data = data.instance_market_options(
                LaunchTemplateInstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::Spot)
                    .build(),
            );
        }
        self.ec2
            .create_launch_template()
            .launch_template_name(name)
            .launch_template_data(data.build())
            .send()
            .await
            .expect("create launch template")
            .launch_template()
            .and_then(|t| t.launch_template_id())
            .unwrap()
            .to_string()
    }

    /// The first subnet of a zone of the default VPC.
    pub async fn subnet(&self, zone: &str) -> String {
        let out = self.ec2.describe_subnets().send().await.expect("subnets");
        out.subnets()
            .iter()
            .find(|s| s.availability_zone() == Some(zone))
            .and_then(|s| s.subnet_id())
            .expect("subnet in zone")
            .to_string()
    }

    pub async fn desired(&self, group: &str) -> i32 {
        let out = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group)
            .send()
            .await
            .unwrap();
        out.auto_scaling_groups()[0].desired_capacity().unwrap()
    }
}

pub fn tag(group: &str, key: &str, value: &str) -> aws_sdk_autoscaling::types::Tag {
    aws_sdk_autoscaling::types::Tag::builder()
        .resource_id(group)
        .resource_type("auto-scaling-group")
        .key(key)
        .value(value)
        .propagate_at_launch(false)
        .build()
}

/// One fault the proxy answers with instead of forwarding.
#[derive(Clone, Debug)]
pub struct Fault {
    /// The operation to match (`Action=<op>` in the form body or in `X-Amz-Target`);
    /// [`Fault::ANY_QUERY`] matches every Auto Scaling and EC2 call, [`Fault::ANY_SQS`]
    /// every SQS call.
    pub operation: String,
    /// HTTP status.
    pub status: u16,
    /// Response body.
    pub body: String,
    /// Response content type.
    pub content_type: &'static str,
    /// How many requests to answer this way.
    pub remaining: u32,
    /// When set, the fault answers every matching request until then (and `remaining`
    /// is ignored).
    pub until: Option<Instant>,
}

impl Fault {
    /// Matches every query-protocol call (Auto Scaling, EC2).
    pub const ANY_QUERY: &'static str = "*query*";
    /// Matches every SQS call (JSON protocol).
    pub const ANY_SQS: &'static str = "*sqs*";
    /// The status of [`Fault::hold`]: the request is read and never answered.
    pub const HOLD: u16 = 0;
    /// The status of [`Fault::delay`]: the request reaches moto after a wait (the
    /// body holds the wait in milliseconds).
    pub const DELAY: u16 = 1;

    /// Forwards the next `times` matching requests to moto `by` late (a slow endpoint).
    pub fn delay(operation: &str, by: Duration, times: u32) -> Fault {
        Fault {
            operation: operation.into(),
            status: Fault::DELAY,
            body: by.as_millis().to_string(),
            content_type: "text/plain",
            remaining: times,
            until: None,
        }
    }

    /// The same fault for every matching request during `window` from now.
    pub fn for_window(mut self, window: Duration) -> Fault {
        self.until = Some(Instant::now() + window);
        self
    }

    fn live(&self) -> bool {
        match self.until {
            Some(until) => Instant::now() < until,
            None => self.remaining > 0,
        }
    }

    fn matches(&self, head: &str, body: &str) -> bool {
        match self.operation.as_str() {
            Fault::ANY_QUERY => body.contains("Action="),
            Fault::ANY_SQS => head.contains("AmazonSQS."),
            op => body.contains(&format!("Action={op}&")) || head.contains(&format!(".{op}\r\n")),
        }
    }

    /// An SQS (JSON protocol) error.
    pub fn sqs(operation: &str, status: u16, code: &str, times: u32) -> Fault {
        Fault {
            operation: operation.into(),
            status,
            body: format!(
                "{{\"__type\":\"com.amazonaws.sqs#{code}\",\"message\":\"injected {code}\"}}"
            ),
            content_type: "application/x-amz-json-1.0",
            remaining: times,
            until: None,
        }
    }

    /// An Auto Scaling (AWS query protocol) error.
    pub fn query(operation: &str, status: u16, code: &str, times: u32) -> Fault {
        Fault {
            operation: operation.into(),
            status,
            body: format!(
                "<ErrorResponse xmlns=\"https://autoscaling.amazonaws.com/doc/2011-01-01/\"><Error>\
                 <Type>Sender</Type><Code>{code}</Code><Message>injected {code}</Message></Error>\
                 <RequestId>fault</RequestId></ErrorResponse>"
            ),
            content_type: "text/xml",
            remaining: times,
            until: None,
        }
    }

    /// A successful EC2 (query protocol) answer with `body` as the whole XML document,
    /// for every matching request: stands in for AWS where moto lacks the action.
    pub fn ec2_answer(operation: &str, body: String) -> Fault {
        Fault {
            operation: operation.into(),
            status: 200,
            body,
            content_type: "text/xml",
            remaining: u32::MAX,
            until: None,
        }
    }

    /// A successful JSON-protocol (`X-Amz-Target`) answer with `body`, for every
    /// matching request: stands in for AWS services moto does not have.
    pub fn json_answer(operation: &str, body: String) -> Fault {
        Fault {
            operation: operation.into(),
            status: 200,
            body,
            content_type: "application/x-amz-json-1.1",
            remaining: u32::MAX,
            until: None,
        }
    }

    /// A JSON-protocol error (`__type` = `code`), `times` times.
    pub fn json_error(operation: &str, status: u16, code: &str, times: u32) -> Fault {
        Fault {
            operation: operation.into(),
            status,
            body: format!("{{\"__type\":\"{code}\",\"message\":\"injected {code}\"}}"),
            content_type: "application/x-amz-json-1.1",
            remaining: times,
            until: None,
        }
    }

    /// Holds `times` matching requests without ever answering (a hung endpoint).
    pub fn hold(operation: &str, times: u32) -> Fault {
        Fault {
            operation: operation.into(),
            status: Fault::HOLD,
            body: String::new(),
            content_type: "text/plain",
            remaining: times,
            until: None,
        }
    }

    /// An EC2 error.
    pub fn ec2(operation: &str, status: u16, code: &str, times: u32) -> Fault {
        Fault {
            operation: operation.into(),
            status,
            body: format!(
                "<Response><Errors><Error><Code>{code}</Code><Message>injected {code}</Message>\
                 </Error></Errors><RequestID>fault</RequestID></Response>"
            ),
            content_type: "text/xml",
            remaining: times,
            until: None,
        }
    }
}

/// A fault-injecting proxy in front of moto. Every request gets its own connection
/// (moto answers `Connection: close`), so each is checked against the faults.
pub struct FaultProxy {
    pub port: u16,
    pub faults: Arc<Mutex<Vec<Fault>>>,
    pub injected: Arc<Mutex<Vec<String>>>,
    /// The request bodies the faults answered, in order.
    pub answered_bodies: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl FaultProxy {
    pub async fn start(upstream: u16) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let faults: Arc<Mutex<Vec<Fault>>> = Arc::default();
        let injected: Arc<Mutex<Vec<String>>> = Arc::default();
        let answered_bodies: Arc<Mutex<Vec<String>>> = Arc::default();
        let (f, inj, bodies) = (faults.clone(), injected.clone(), answered_bodies.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let (f, inj, bodies) = (f.clone(), inj.clone(), bodies.clone());
                tokio::spawn(async move {
                    // Read the request head and body.
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let head_end = loop {
                        if let Some(p) = find(&buf, b"\r\n\r\n") {
                            break p + 4;
                        }
                        match client.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match client.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
                    let fault = {
                        let mut faults = f.lock().unwrap();
                        faults
                            .iter_mut()
                            .find(|x| x.live() && x.matches(&head, &body))
                            .map(|x| {
                                x.remaining = x.remaining.saturating_sub(1);
                                x.clone()
                            })
                    };
                    if let Some(fault) = &fault {
                        inj.lock()
                            .unwrap()
                            .push(format!("{} {}", fault.operation, fault.status));
                        bodies.lock().unwrap().push(body.clone());
                        if fault.status == Fault::HOLD {
                            // Keep the connection open and silent until the test ends.
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                    }
                    if let Some(fault) = fault.as_ref().filter(|f| f.status != Fault::DELAY) {
                        let resp = format!(
                            "HTTP/1.1 {} Injected\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                            fault.status,
                            fault.content_type,
                            fault.body.len(),
                            fault.body
                        );
                        let _ = client.write_all(resp.as_bytes()).await;
                        let _ = client.shutdown().await;
                        return;
                    }
                    if let Some(fault) = fault.as_ref().filter(|f| f.status == Fault::DELAY) {
                        let ms = fault.body.parse().unwrap_or(0);
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    if up.write_all(&buf).await.is_err() {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                });
            }
        });
        FaultProxy {
            port,
            faults,
            injected,
            answered_bodies,
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn inject(&self, fault: Fault) {
        self.faults.lock().unwrap().push(fault);
    }

    /// Drops every fault: requests reach moto again.
    pub fn clear(&self) {
        self.faults.lock().unwrap().clear();
    }

    /// How many requests for `operation` the faults answered so far.
    pub fn answered(&self, operation: &str) -> usize {
        let prefix = format!("{operation} ");
        self.injected
            .lock()
            .unwrap()
            .iter()
            .filter(|i| i.starts_with(&prefix))
            .count()
    }

    /// How many requests were answered with a fault so far.
    pub fn injected_count(&self) -> usize {
        self.injected.lock().unwrap().len()
    }
}
