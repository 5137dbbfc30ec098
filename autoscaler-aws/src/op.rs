//! The AWS API actions the adapter calls and the token-bucket family of each: a leaf
//! module that the API wrapper and the metrics both name.

/// A family of API actions sharing one client-side token bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApiFamily {
    /// Auto Scaling `Describe*`.
    AutoScalingRead,
    /// Auto Scaling mutating actions.
    AutoScalingWrite,
    /// EC2 `Describe*` (non-mutating).
    Ec2Read,
    /// SQS.
    Sqs,
    /// EventBridge.
    EventBridge,
    /// The Price List query API (`pricing:GetProducts`).
    Pricing,
}

impl ApiFamily {
    pub(crate) const ALL: [ApiFamily; 6] = [
        ApiFamily::AutoScalingRead,
        ApiFamily::AutoScalingWrite,
        ApiFamily::Ec2Read,
        ApiFamily::Sqs,
        ApiFamily::EventBridge,
        ApiFamily::Pricing,
    ];
}

macro_rules! ops {
    ($($variant:ident => $action:literal, $family:ident;)*) => {
        /// One AWS API action the adapter calls.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Op {
            $(
                #[doc = concat!("`", $action, "`")]
                $variant,
            )*
        }

        impl Op {
            /// Every action, in declaration order.
            pub const ALL: &'static [Op] = &[$(Op::$variant),*];

            /// The IAM action (`service:Operation`).
            pub fn action(self) -> &'static str {
                match self { $(Op::$variant => $action,)* }
            }

            /// The token bucket it draws from.
            pub fn family(self) -> ApiFamily {
                match self { $(Op::$variant => ApiFamily::$family,)* }
            }

            /// The operation name as the SDK reports it (`DescribeAutoScalingGroups`):
            /// the variant's name, which is the IAM action's operation except for
            /// `DeleteMessageBatch` (IAM action `sqs:DeleteMessage`).
            pub fn operation(self) -> &'static str {
                match self { $(Op::$variant => stringify!($variant),)* }
            }
        }
    };
}

ops! {
    DescribeAutoScalingGroups => "autoscaling:DescribeAutoScalingGroups", AutoScalingRead;
    DescribeScalingActivities => "autoscaling:DescribeScalingActivities", AutoScalingRead;
    DescribeLaunchConfigurations => "autoscaling:DescribeLaunchConfigurations", AutoScalingRead;
    DescribeAutoScalingInstances => "autoscaling:DescribeAutoScalingInstances", AutoScalingRead;
    SetDesiredCapacity => "autoscaling:SetDesiredCapacity", AutoScalingWrite;
    TerminateInstanceInAutoScalingGroup => "autoscaling:TerminateInstanceInAutoScalingGroup", AutoScalingWrite;
    DescribeInstances => "ec2:DescribeInstances", Ec2Read;
    DescribeInstanceTypes => "ec2:DescribeInstanceTypes", Ec2Read;
    DescribeLaunchTemplateVersions => "ec2:DescribeLaunchTemplateVersions", Ec2Read;
    DescribeSpotPriceHistory => "ec2:DescribeSpotPriceHistory", Ec2Read;
    DescribeImages => "ec2:DescribeImages", Ec2Read;
    GetInstanceTypesFromInstanceRequirements => "ec2:GetInstanceTypesFromInstanceRequirements", Ec2Read;
    ReceiveMessage => "sqs:ReceiveMessage", Sqs;
    DeleteMessageBatch => "sqs:DeleteMessage", Sqs;
    CreateQueue => "sqs:CreateQueue", Sqs;
    GetQueueAttributes => "sqs:GetQueueAttributes", Sqs;
    SetQueueAttributes => "sqs:SetQueueAttributes", Sqs;
    GetQueueUrl => "sqs:GetQueueUrl", Sqs;
    PutRule => "events:PutRule", EventBridge;
    PutTargets => "events:PutTargets", EventBridge;
    DescribeRule => "events:DescribeRule", EventBridge;
    ListTargetsByRule => "events:ListTargetsByRule", EventBridge;
    GetProducts => "pricing:GetProducts", Pricing;
}

impl Op {
    /// Whether the action reads or changes node groups (not the event path).
    pub fn is_control_plane(self) -> bool {
        matches!(
            self.family(),
            ApiFamily::AutoScalingRead | ApiFamily::AutoScalingWrite | ApiFamily::Ec2Read
        )
    }

    pub(crate) fn from_operation(name: &str) -> Option<Op> {
        Op::ALL.iter().copied().find(|op| op.operation() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_iam_policy_allows_every_action_called() {
        let policy = include_str!("../iam-policy.json");
        for &op in Op::ALL {
            assert!(
                policy.contains(&format!("\"{}\"", op.action())),
                "{} is called but missing from iam-policy.json",
                op.action()
            );
        }
    }

    #[test]
    fn operation_names_are_the_sdks() {
        for &op in Op::ALL {
            let from_action = op.action().split_once(':').map_or("", |(_, o)| o);
            if op == Op::DeleteMessageBatch {
                assert_eq!(op.operation(), "DeleteMessageBatch");
            } else {
                assert_eq!(op.operation(), from_action, "{op:?}");
            }
            assert_eq!(Op::from_operation(op.operation()), Some(op));
        }
    }
}
