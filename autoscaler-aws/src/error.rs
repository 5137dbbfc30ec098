//! Errors of the AWS adapter. Each names what to fix.

use thiserror::Error;

/// An error from one AWS call or from interpreting AWS state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AwsError {
    /// The role lacks an IAM permission.
    #[error(
        "access denied for {action}: the autoscaler's IAM role is missing the permission \
         {action:?} (or a tag condition excludes this resource); add it as in \
         autoscaler-aws/iam-policy.json. AWS said: {message}"
    )]
    AccessDenied {
        /// The IAM action, e.g. `autoscaling:SetDesiredCapacity`.
        action: &'static str,
        /// AWS's message.
        message: String,
    },
    /// AWS kept throttling the call after the SDK's retries.
    #[error("{action} was throttled by AWS ({code}) after retries; the client-side rate limits may be set above the account's limits")]
    Throttled {
        /// The IAM action.
        action: &'static str,
        /// The error code (`Throttling`, `RequestLimitExceeded`, ...).
        code: String,
    },
    /// AWS rejected the call.
    #[error("{action} failed: {code}: {message}")]
    Api {
        /// The IAM action.
        action: &'static str,
        /// The error code.
        code: String,
        /// AWS's message.
        message: String,
    },
    /// The call did not get an answer (network, timeout, unparseable response).
    #[error("{action} did not complete: {message}")]
    Transport {
        /// The IAM action.
        action: &'static str,
        /// What happened.
        message: String,
    },
    /// A group named in the configuration does not exist.
    #[error("auto scaling group {0:?} does not exist in this account and region; fix the --nodes flag or create the group")]
    UnknownGroup(String),
    /// An instance is not in any managed group.
    #[error("instance {0} is not in any managed auto scaling group")]
    UnknownInstance(String),
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl AwsError {
    /// Whether the error is a throttle.
    pub fn is_throttle(&self) -> bool {
        matches!(self, AwsError::Throttled { .. })
    }
}

/// A problem with one group that does not stop the others.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("auto scaling group {group:?}: {problem}")]
pub struct GroupError {
    /// ASG name.
    pub group: String,
    /// What is wrong and how to fix it.
    pub problem: String,
}

/// Error codes AWS uses for throttling across EC2, Auto Scaling, SQS and EventBridge.
pub(crate) fn is_throttle_code(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestLimitExceeded"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "SlowDown"
            | "PriorRequestNotComplete"
    )
}

/// Error codes AWS uses for missing permissions.
pub(crate) fn is_access_denied_code(code: &str) -> bool {
    matches!(
        code,
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "AuthFailure"
    )
}
