//! Optional creation and verification of the EventBridge rules and the SQS queue they
//! feed (the same resources as the CloudFormation/Terraform in `docs/events.md`).

use crate::api::{Api, Op};
use crate::error::AwsError;
use crate::events::{HEALTH, LAUNCH_UNSUCCESSFUL, REBALANCE, SPOT_INTERRUPTION, STATE_CHANGE};
use aws_sdk_eventbridge::types::{RuleState, Target};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{json, Value};
use std::sync::Arc;

/// The rules: `(name suffix, event pattern)`.
pub fn rule_patterns() -> Vec<(&'static str, Value)> {
    vec![
        (
            "launch-unsuccessful",
            json!({"source": ["aws.autoscaling"], "detail-type": [LAUNCH_UNSUCCESSFUL]}),
        ),
        (
            "spot-interruption",
            json!({"source": ["aws.ec2"], "detail-type": [SPOT_INTERRUPTION]}),
        ),
        (
            "rebalance",
            json!({"source": ["aws.ec2"], "detail-type": [REBALANCE]}),
        ),
        (
            "state-change",
            json!({"source": ["aws.ec2"], "detail-type": [STATE_CHANGE],
                   "detail": {"state": ["stopping", "shutting-down", "stopped", "terminated"]}}),
        ),
        (
            "scheduled-change",
            json!({"source": ["aws.health"], "detail-type": [HEALTH],
                   "detail": {"service": ["EC2"], "eventTypeCategory": ["scheduledChange"]}}),
        ),
    ]
}

/// Names of the queue and rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventInfra {
    /// SQS queue name.
    pub queue_name: String,
    /// Prefix of the rule names (`<prefix>-spot-interruption`, ...).
    pub rule_prefix: String,
}

/// What exists after [`EventInfra::ensure`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventInfraState {
    /// Queue URL.
    pub queue_url: String,
    /// Queue ARN.
    pub queue_arn: String,
    /// Rule ARNs.
    pub rule_arns: Vec<String>,
}

impl EventInfra {
    /// Names for a cluster: queue `<cluster>-autoscaler-events`, rules `<cluster>-autoscaler-*`.
    pub fn for_cluster(cluster: &str) -> Self {
        EventInfra {
            queue_name: format!("{cluster}-autoscaler-events"),
            rule_prefix: format!("{cluster}-autoscaler"),
        }
    }

    /// Creates or updates the queue, its policy and the rules with the queue as target.
    /// Every step is an upsert, so it is safe to run at every start.
    pub async fn ensure(&self, api: &Arc<Api>) -> Result<EventInfraState, AwsError> {
        let queue_url = api
            .call(
                Op::CreateQueue,
                api.sqs
                    .create_queue()
                    .queue_name(&self.queue_name)
                    .attributes(QueueAttributeName::MessageRetentionPeriod, "300")
                    .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
                    .send(),
            )
            .await?
            .queue_url()
            .unwrap_or_default()
            .to_string();
        let queue_arn = self.queue_arn(api, &queue_url).await?;
        let mut rule_arns = Vec::new();
        for (suffix, pattern) in rule_patterns() {
            let name = format!("{}-{suffix}", self.rule_prefix);
            let arn = api
                .call(
                    Op::PutRule,
                    api.eventbridge
                        .put_rule()
                        .name(&name)
                        .event_pattern(pattern.to_string())
                        .state(RuleState::Enabled)
                        .description("cluster autoscaler: ICE and interruption events")
                        .send(),
                )
                .await?
                .rule_arn()
                .unwrap_or_default()
                .to_string();
            let target = Target::builder()
                .id("autoscaler-queue")
                .arn(&queue_arn)
                .build()
                .map_err(|e| AwsError::Config(e.to_string()))?;
            let out = api
                .call(
                    Op::PutTargets,
                    api.eventbridge
                        .put_targets()
                        .rule(&name)
                        .targets(target)
                        .send(),
                )
                .await?;
            if out.failed_entry_count() > 0 {
                return Err(AwsError::Config(format!(
                    "rule {name}: target not set: {:?}",
                    out.failed_entries()
                )));
            }
            rule_arns.push(arn);
        }
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "EventBridgeToAutoscalerQueue",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arns}}
            }]
        });
        api.call(
            Op::SetQueueAttributes,
            api.sqs
                .set_queue_attributes()
                .queue_url(&queue_url)
                .attributes(QueueAttributeName::Policy, policy.to_string())
                .send(),
        )
        .await?;
        Ok(EventInfraState {
            queue_url,
            queue_arn,
            rule_arns,
        })
    }

    async fn queue_arn(&self, api: &Arc<Api>, queue_url: &str) -> Result<String, AwsError> {
        let out = api
            .call(
                Op::GetQueueAttributes,
                api.sqs
                    .get_queue_attributes()
                    .queue_url(queue_url)
                    .attribute_names(QueueAttributeName::QueueArn)
                    .send(),
            )
            .await?;
        out.attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .ok_or_else(|| AwsError::Config(format!("queue {queue_url} has no ARN")))
    }

    /// Checks that the queue exists and every rule exists, is enabled, has the expected
    /// pattern and targets the queue. Returns the problems found (empty: all good).
    pub async fn verify(&self, api: &Arc<Api>) -> Result<Vec<String>, AwsError> {
        let mut problems = Vec::new();
        let queue_url = match api
            .call(
                Op::GetQueueUrl,
                api.sqs.get_queue_url().queue_name(&self.queue_name).send(),
            )
            .await
        {
            Ok(out) => out.queue_url().unwrap_or_default().to_string(),
            Err(e @ AwsError::AccessDenied { .. }) => return Err(e),
            Err(e) => {
                problems.push(format!("queue {}: {e}", self.queue_name));
                return Ok(problems);
            }
        };
        let queue_arn = self.queue_arn(api, &queue_url).await?;
        for (suffix, pattern) in rule_patterns() {
            let name = format!("{}-{suffix}", self.rule_prefix);
            let rule = match api
                .call(
                    Op::DescribeRule,
                    api.eventbridge.describe_rule().name(&name).send(),
                )
                .await
            {
                Ok(r) => r,
                Err(e @ AwsError::AccessDenied { .. }) => return Err(e),
                Err(e) => {
                    problems.push(format!("rule {name}: {e}"));
                    continue;
                }
            };
            if rule.state() != Some(&RuleState::Enabled) {
                problems.push(format!("rule {name} is not enabled"));
            }
            let actual: Option<Value> = rule
                .event_pattern()
                .and_then(|p| serde_json::from_str(p).ok());
            if actual.as_ref() != Some(&pattern) {
                problems.push(format!(
                    "rule {name} has pattern {:?}, expected {pattern}",
                    rule.event_pattern()
                ));
            }
            let targets = api
                .call(
                    Op::ListTargetsByRule,
                    api.eventbridge.list_targets_by_rule().rule(&name).send(),
                )
                .await?;
            if !targets.targets().iter().any(|t| t.arn() == queue_arn) {
                problems.push(format!("rule {name} does not target queue {queue_arn}"));
            }
        }
        Ok(problems)
    }
}
