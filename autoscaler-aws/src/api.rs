//! The AWS clients behind client-side token buckets, with per-call metrics and errors
//! that name the IAM action.

use crate::error::{is_access_denied_code, is_throttle_code, is_validation_code, AwsError};
use crate::metrics::Metrics;
pub use crate::op::{ApiFamily, Op};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The region of the Price List query endpoint used (it also answers from
/// `eu-central-1` and `ap-south-1`; the prices are the same).
pub const PRICING_REGION: &str = "us-east-1";

/// Size of one token bucket: `burst` calls at once, `per_second` sustained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Bucket size.
    pub burst: u32,
    /// Refill per second.
    pub per_second: u32,
}

/// Client-side rate limits per API family.
///
/// The defaults take **half** of AWS's published per-account buckets, so the autoscaler
/// leaves room for everything else in the account:
/// - EC2 non-mutating actions: bucket 100, refill 20/s (EC2 API throttling docs) -> 50, 10/s.
/// - Auto Scaling does not publish token buckets; its `Describe*` actions throttle in
///   practice around 20 requests/s per account, its mutating actions much lower, so
///   reads get 10 burst / 5 per s and writes 10 burst / 2 per s.
/// - SQS has no per-account call limit worth the name; the bucket only stops a hot loop.
/// - EventBridge control plane (`PutRule`, ...) is only used at setup: 5 burst / 1 per s.
/// - The Price List API is read a few times every few hours: 5 burst / 1 per s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Auto Scaling `Describe*`.
    pub autoscaling_read: Bucket,
    /// Auto Scaling mutating actions.
    pub autoscaling_write: Bucket,
    /// EC2 `Describe*`.
    pub ec2_read: Bucket,
    /// SQS.
    pub sqs: Bucket,
    /// EventBridge.
    pub eventbridge: Bucket,
    /// Price List (`pricing:GetProducts`).
    pub pricing: Bucket,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            autoscaling_read: Bucket {
                burst: 10,
                per_second: 5,
            },
            autoscaling_write: Bucket {
                burst: 10,
                per_second: 2,
            },
            ec2_read: Bucket {
                burst: 50,
                per_second: 10,
            },
            sqs: Bucket {
                burst: 50,
                per_second: 50,
            },
            eventbridge: Bucket {
                burst: 5,
                per_second: 1,
            },
            pricing: Bucket {
                burst: 5,
                per_second: 1,
            },
        }
    }
}

impl RateLimitConfig {
    fn bucket(&self, family: ApiFamily) -> Bucket {
        match family {
            ApiFamily::AutoScalingRead => self.autoscaling_read,
            ApiFamily::AutoScalingWrite => self.autoscaling_write,
            ApiFamily::Ec2Read => self.ec2_read,
            ApiFamily::Sqs => self.sqs,
            ApiFamily::EventBridge => self.eventbridge,
            ApiFamily::Pricing => self.pricing,
        }
    }
}

/// Retry settings handed to the SDK (standard mode: exponential backoff with jitter,
/// throttling and 5xx errors retried).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetrySettings {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// First backoff.
    pub initial_backoff: Duration,
    /// Backoff cap.
    pub max_backoff: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RetrySettings {
    fn to_sdk(self) -> RetryConfig {
        RetryConfig::standard()
            .with_max_attempts(self.max_attempts)
            .with_initial_backoff(self.initial_backoff)
            .with_max_backoff(self.max_backoff)
    }
}

/// Time limits of every AWS call, so a hung endpoint fails the round (a
/// [`AwsError::Transport`] naming the action) instead of blocking it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeoutSettings {
    /// One HTTP attempt (SQS long polls get their 20 s wait on top).
    pub attempt: Duration,
    /// The whole call, retries and backoff included.
    pub operation: Duration,
}

impl Default for TimeoutSettings {
    fn default() -> Self {
        TimeoutSettings {
            attempt: Duration::from_secs(20),
            operation: Duration::from_secs(60),
        }
    }
}

/// The longest SQS long poll (`WaitTimeSeconds` 20): a receive legitimately waits that
/// long before answering.
const SQS_LONG_POLL: Duration = Duration::from_secs(20);

impl TimeoutSettings {
    fn to_sdk(self, wait: Duration) -> TimeoutConfig {
        TimeoutConfig::builder()
            .operation_attempt_timeout(self.attempt + wait)
            .operation_timeout(self.operation + wait)
            .build()
    }
}

/// Counts attempts and throttled answers per operation, retries included.
#[derive(Debug)]
struct MetricsInterceptor {
    metrics: Arc<Metrics>,
}

fn op_of(cfg: &ConfigBag) -> Option<Op> {
    cfg.load::<Metadata>()
        .and_then(|m| Op::from_operation(m.name()))
}

impl Intercept for MetricsInterceptor {
    fn name(&self) -> &'static str {
        "autoscaler-aws-metrics"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(op) = op_of(cfg) {
            self.metrics.record_attempt(op);
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response();
        let status = response.status().as_u16();
        let throttled = status == 429
            || (status >= 400
                && response.body().bytes().is_some_and(|b| {
                    let text = String::from_utf8_lossy(b);
                    [
                        "Throttling",
                        "RequestLimitExceeded",
                        "TooManyRequests",
                        "SlowDown",
                    ]
                    .iter()
                    .any(|c| text.contains(c))
                }));
        if throttled {
            if let Some(op) = op_of(cfg) {
                self.metrics.record_throttle(op);
            }
        }
        Ok(())
    }
}

/// The SDK clients with rate limits, retries and metrics.
pub struct Api {
    /// Auto Scaling client.
    pub autoscaling: aws_sdk_autoscaling::Client,
    /// EC2 client.
    pub ec2: aws_sdk_ec2::Client,
    /// SQS client.
    pub sqs: aws_sdk_sqs::Client,
    /// EventBridge client.
    pub eventbridge: aws_sdk_eventbridge::Client,
    /// Price List client, in [`PRICING_REGION`] whatever the cluster's region.
    pub pricing: aws_sdk_pricing::Client,
    limiters: Vec<(ApiFamily, DefaultDirectRateLimiter)>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

fn nz(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v.max(1)).unwrap_or(NonZeroU32::MIN)
}

/// Which Auto Scaling groups a paginated `DescribeAutoScalingGroups` asks for.
#[derive(Debug, Clone)]
pub enum GroupQuery {
    /// By name (at most one page size of names per call).
    Names(Vec<String>),
    /// By tag filters.
    Filters(Vec<aws_sdk_autoscaling::types::Filter>),
}

impl Api {
    /// Every group matching `query`, following `NextToken` pages.
    pub async fn describe_groups(
        &self,
        query: GroupQuery,
        page_size: i32,
    ) -> Result<Vec<aws_sdk_autoscaling::types::AutoScalingGroup>, AwsError> {
        let mut groups = Vec::new();
        let mut token = None;
        loop {
            let request = self
                .autoscaling
                .describe_auto_scaling_groups()
                .max_records(page_size)
                .set_next_token(token.take());
            let request = match &query {
                GroupQuery::Names(names) => {
                    request.set_auto_scaling_group_names(Some(names.clone()))
                }
                GroupQuery::Filters(filters) => request.set_filters(Some(filters.clone())),
            };
            let out = self
                .call(Op::DescribeAutoScalingGroups, request.send())
                .await?;
            groups.extend(out.auto_scaling_groups().iter().cloned());
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(groups);
            }
        }
    }

    /// Builds the clients from a loaded SDK configuration (region, credentials, endpoint),
    /// with the default [`TimeoutSettings`].
    pub fn new(
        sdk: &aws_types::SdkConfig,
        limits: RateLimitConfig,
        retry: RetrySettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self::with_timeouts(sdk, limits, retry, TimeoutSettings::default(), metrics)
    }

    /// [`Api::new`] with these time limits on every call.
    pub fn with_timeouts(
        sdk: &aws_types::SdkConfig,
        limits: RateLimitConfig,
        retry: RetrySettings,
        timeouts: TimeoutSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let timeout = timeouts.to_sdk(Duration::ZERO);
        let interceptor = || MetricsInterceptor {
            metrics: metrics.clone(),
        };
        let autoscaling = aws_sdk_autoscaling::Client::from_conf(
            aws_sdk_autoscaling::config::Builder::from(sdk)
                .interceptor(interceptor())
                .retry_config(retry.to_sdk())
                .timeout_config(timeout.clone())
                .build(),
        );
        let ec2 = aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::config::Builder::from(sdk)
                .interceptor(interceptor())
                .retry_config(retry.to_sdk())
                .timeout_config(timeout.clone())
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(sdk)
                .interceptor(interceptor())
                .retry_config(retry.to_sdk())
                .timeout_config(timeouts.to_sdk(SQS_LONG_POLL))
                .build(),
        );
        let eventbridge = aws_sdk_eventbridge::Client::from_conf(
            aws_sdk_eventbridge::config::Builder::from(sdk)
                .interceptor(interceptor())
                .retry_config(retry.to_sdk())
                .timeout_config(timeout.clone())
                .build(),
        );
        let pricing = aws_sdk_pricing::Client::from_conf(
            aws_sdk_pricing::config::Builder::from(sdk)
                .region(aws_types::region::Region::new(PRICING_REGION))
                .interceptor(interceptor())
                .retry_config(retry.to_sdk())
                .timeout_config(timeout.clone())
                .build(),
        );
        let limiters = ApiFamily::ALL
            .iter()
            .map(|&f| {
                let b = limits.bucket(f);
                let quota = Quota::per_second(nz(b.per_second)).allow_burst(nz(b.burst));
                (f, RateLimiter::direct(quota))
            })
            .collect();
        Api {
            autoscaling,
            ec2,
            sqs,
            eventbridge,
            pricing,
            limiters,
            metrics,
        }
    }

    /// The region of the EC2 client (the cluster's), if configured.
    pub fn region(&self) -> Option<&str> {
        self.ec2.config().region().map(|r| r.as_ref())
    }

    /// The metrics the calls update.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Runs one SDK call: waits for a token of the action's bucket, times the call, and
    /// turns an error into an [`AwsError`] naming the IAM action.
    pub(crate) async fn call<T, E, R, F>(&self, op: Op, fut: F) -> Result<T, AwsError>
    where
        F: Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let waited = Instant::now();
        if let Some((_, limiter)) = self.limiters.iter().find(|(f, _)| *f == op.family()) {
            limiter.until_ready().await;
        }
        let start = Instant::now();
        let wait = start - waited;
        let result = fut.await;
        let latency = start.elapsed();
        self.metrics.record_call(op, latency, wait, result.is_ok());
        result.map_err(|e| classify_error(op, e))
    }
}

fn classify_error<E, R>(op: Op, err: SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let action = op.action();
    let code = err.code().map(str::to_string);
    let message = err.message().unwrap_or_default().to_string();
    let error = match code {
        Some(code) if is_access_denied_code(&code) => AwsError::AccessDenied { action, message },
        Some(code) if is_throttle_code(&code) => AwsError::Throttled { action, code },
        Some(code) if is_validation_code(&code) => AwsError::Validation {
            action,
            code,
            message,
        },
        Some(code) => AwsError::Api {
            action,
            code,
            message,
        },
        None => AwsError::Transport {
            action,
            message: DisplayErrorContext(&err).to_string(),
        },
    };
    tracing::warn!(action, %error, "AWS call failed");
    error
}
