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
    /// AWS rejected the request itself (a parameter AWS does not accept, e.g. a desired
    /// capacity above the group's max size, or a malformed name).
    #[error("{action} was rejected as invalid ({code}): {message}; check the group's settings and the autoscaler's flags")]
    Validation {
        /// The IAM action.
        action: &'static str,
        /// The error code (`ValidationError`, `InvalidParameterValue`, ...).
        code: String,
        /// AWS's message.
        message: String,
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

    /// The kind, as a metric label: `throttled`, `access_denied`, `validation`, `api`,
    /// `transport`, `unknown_group`, `unknown_instance`, `config`.
    pub fn kind(&self) -> &'static str {
        match self {
            AwsError::AccessDenied { .. } => "access_denied",
            AwsError::Throttled { .. } => "throttled",
            AwsError::Validation { .. } => "validation",
            AwsError::Api { .. } => "api",
            AwsError::Transport { .. } => "transport",
            AwsError::UnknownGroup(_) => "unknown_group",
            AwsError::UnknownInstance(_) => "unknown_instance",
            AwsError::Config(_) => "config",
        }
    }

    /// The IAM action of the failed call (`autoscaling:SetDesiredCapacity`), when the
    /// error comes from one.
    pub fn action(&self) -> Option<&'static str> {
        match self {
            AwsError::AccessDenied { action, .. }
            | AwsError::Throttled { action, .. }
            | AwsError::Validation { action, .. }
            | AwsError::Api { action, .. }
            | AwsError::Transport { action, .. } => Some(action),
            AwsError::UnknownGroup(_) | AwsError::UnknownInstance(_) | AwsError::Config(_) => None,
        }
    }
}

/// A problem with one group that does not stop the others.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("auto scaling group {group:?}: {problem}")]
pub struct GroupError {
    /// ASG name.
    pub group: String,
    /// What is wrong and how to fix it.
    pub problem: GroupProblem,
}

/// Why a group cannot be used: an AWS call about it failed (typed: throttled, access
/// denied with the IAM action, validation, ...), or what AWS says about it does not
/// work for the autoscaler.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GroupProblem {
    /// An AWS call about the group failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The group's setup (tags, launch template, instance types) cannot be used as it is.
    #[error("{0}")]
    Setup(String),
}

impl GroupProblem {
    /// The kind, as a metric label: the [`AwsError::kind`], or `setup`.
    pub fn kind(&self) -> &'static str {
        match self {
            GroupProblem::Aws(e) => e.kind(),
            GroupProblem::Setup(_) => "setup",
        }
    }
}

impl From<String> for GroupProblem {
    fn from(s: String) -> Self {
        GroupProblem::Setup(s)
    }
}

impl From<&str> for GroupProblem {
    fn from(s: &str) -> Self {
        GroupProblem::Setup(s.to_string())
    }
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

/// Error codes AWS uses for a request it rejects as invalid.
pub(crate) fn is_validation_code(code: &str) -> bool {
    matches!(
        code,
        "ValidationError"
            | "ValidationException"
            | "InvalidParameterValue"
            | "InvalidParameterCombination"
            | "InvalidParameter"
            | "MissingParameter"
            | "InvalidAttributeValue"
    )
}

/// Error codes AWS uses for missing permissions.
pub(crate) fn is_access_denied_code(code: &str) -> bool {
    matches!(
        code,
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "AuthFailure"
    )
}
