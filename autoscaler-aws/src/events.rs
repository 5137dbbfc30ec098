//! EventBridge events (as delivered to SQS) and scaling activities -> core [`Event`]s.
//!
//! Handled:
//! - `aws.autoscaling` "EC2 Instance Launch Unsuccessful" -> [`Event::LaunchFailed`]
//! - `aws.ec2` "EC2 Spot Instance Interruption Warning" -> spot interruption (deadline:
//!   event time + 2 minutes)
//! - `aws.ec2` "EC2 Instance Rebalance Recommendation" -> rebalance recommendation
//! - `aws.ec2` "EC2 Instance State-change Notification" to stopping / shutting-down /
//!   stopped / terminated -> state change (other states are ignored)
//! - `aws.health` "AWS Health Event" of category `scheduledChange` for EC2 -> one
//!   scheduled change per affected instance

use autoscaler_core::{Event, InterruptionKind, LaunchFailureReason, Timestamp};
use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;
use regex::Regex;
use serde_json::Value;
use std::sync::OnceLock;
use std::time::Duration;
use thiserror::Error;

/// Detail types of the rules (also used to build them, see [`crate::setup`]).
pub const LAUNCH_UNSUCCESSFUL: &str = "EC2 Instance Launch Unsuccessful";
/// Spot interruption warning.
pub const SPOT_INTERRUPTION: &str = "EC2 Spot Instance Interruption Warning";
/// Rebalance recommendation.
pub const REBALANCE: &str = "EC2 Instance Rebalance Recommendation";
/// State change.
pub const STATE_CHANGE: &str = "EC2 Instance State-change Notification";
/// AWS Health.
pub const HEALTH: &str = "AWS Health Event";

/// Why a message could not be turned into events.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MalformedEvent {
    /// Not JSON.
    #[error("body is not JSON: {0}")]
    NotJson(String),
    /// A required field is missing or has the wrong type.
    #[error("field {0:?} is missing or not a string")]
    Missing(&'static str),
    /// An event of a source/detail-type the adapter does not subscribe to.
    #[error("unexpected event {event_source:?} / {detail_type:?}; check the EventBridge rules' patterns")]
    Unexpected {
        /// `source`.
        event_source: String,
        /// `detail-type`.
        detail_type: String,
    },
}

/// What one message means for the core.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Events for the core.
    Events(Vec<Event>),
    /// A well-formed event with nothing for the core (e.g. an instance now `running`).
    Ignored(&'static str),
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn required<'a>(
    v: &'a Value,
    pointer: &str,
    name: &'static str,
) -> Result<&'a str, MalformedEvent> {
    str_at(v, pointer).ok_or(MalformedEvent::Missing(name))
}

/// Parses a time in RFC 3339 (`2024-05-01T12:00:00Z`) or HTTP-date form into a
/// Unix-epoch [`Timestamp`].
pub fn parse_time(s: &str) -> Option<Timestamp> {
    let dt = DateTime::from_str(s, Format::DateTime)
        .or_else(|_| DateTime::from_str(s, Format::HttpDate))
        .ok()?;
    let ms = dt.to_millis().ok()?;
    u64::try_from(ms).ok().map(Timestamp::from_millis)
}

fn instance_type_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"\b([a-z][a-z0-9-]*[0-9][a-z0-9-]*\.(?:nano|micro|small|medium|large|[0-9]*xlarge|metal(?:-[0-9]+xl)?))\b")
            .unwrap_or_else(|e| unreachable!("static regex: {e}"))
    })
}

fn zone_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"\b([a-z]{2}(?:-gov)?-[a-z]+-[0-9][a-z](?:-[a-z]{3}-[0-9][a-z]?)?)\b")
            .unwrap_or_else(|e| unreachable!("static regex: {e}"))
    })
}

/// Pulls the instance type and zone out of an AWS status message, when it names them
/// ("... sufficient m5.2xlarge capacity in the Availability Zone you requested (us-east-1a)").
pub fn type_and_zone_in(text: &str) -> (Option<String>, Option<String>) {
    let itype = instance_type_regex()
        .captures(text)
        .map(|c| c[1].to_string());
    let zone = zone_regex().captures(text).map(|c| c[1].to_string());
    (itype, zone)
}

/// Turns a failed launch (EventBridge detail or scaling activity) into the core's event.
/// `details` is the activity's `Details` object (it holds `Availability Zone`).
pub fn launch_failure(group: &str, status_message: &str, details: Option<&Value>) -> Event {
    let (instance_type, zone_in_text) = type_and_zone_in(status_message);
    let zone = details
        .and_then(|d| d.get("Availability Zone"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or(zone_in_text);
    Event::LaunchFailed {
        group: group.to_string(),
        zone,
        instance_type,
        reason: LaunchFailureReason::classify(status_message),
    }
}

fn interruption(instance_id: &str, kind: InterruptionKind, deadline: Option<Timestamp>) -> Event {
    Event::InstanceInterruption {
        instance_id: instance_id.to_string(),
        kind,
        zone: None,
        instance_type: None,
        deadline,
    }
}

/// Parses one EventBridge event (the SQS message body).
pub fn parse_event(body: &str) -> Result<Parsed, MalformedEvent> {
    let v: Value =
        serde_json::from_str(body).map_err(|e| MalformedEvent::NotJson(e.to_string()))?;
    let source = required(&v, "/source", "source")?;
    let detail_type = required(&v, "/detail-type", "detail-type")?;
    let time = str_at(&v, "/time").and_then(parse_time);
    let detail = v
        .get("detail")
        .filter(|d| d.is_object())
        .ok_or(MalformedEvent::Missing("detail"))?;
    match (source, detail_type) {
        ("aws.autoscaling", LAUNCH_UNSUCCESSFUL) => {
            let group = required(
                detail,
                "/AutoScalingGroupName",
                "detail.AutoScalingGroupName",
            )?;
            let message = required(detail, "/StatusMessage", "detail.StatusMessage")?;
            // `Details` is an object in events, a JSON string in activities.
            let details = match detail.get("Details") {
                Some(Value::String(s)) => serde_json::from_str(s).ok(),
                Some(d @ Value::Object(_)) => Some(d.clone()),
                _ => None,
            };
            Ok(Parsed::Events(vec![launch_failure(
                group,
                message,
                details.as_ref(),
            )]))
        }
        ("aws.ec2", SPOT_INTERRUPTION) => {
            let id = required(detail, "/instance-id", "detail.instance-id")?;
            Ok(Parsed::Events(vec![interruption(
                id,
                InterruptionKind::SpotInterruption,
                time.map(|t| t + Duration::from_secs(120)),
            )]))
        }
        ("aws.ec2", REBALANCE) => {
            let id = required(detail, "/instance-id", "detail.instance-id")?;
            Ok(Parsed::Events(vec![interruption(
                id,
                InterruptionKind::RebalanceRecommendation,
                None,
            )]))
        }
        ("aws.ec2", STATE_CHANGE) => {
            let id = required(detail, "/instance-id", "detail.instance-id")?;
            let state = required(detail, "/state", "detail.state")?;
            match state {
                "stopping" | "shutting-down" | "stopped" | "terminated" => Ok(Parsed::Events(
                    vec![interruption(id, InterruptionKind::StateChange, time)],
                )),
                _ => Ok(Parsed::Ignored("instance state change to a live state")),
            }
        }
        ("aws.health", HEALTH) => {
            if str_at(detail, "/service") != Some("EC2")
                || str_at(detail, "/eventTypeCategory") != Some("scheduledChange")
            {
                return Ok(Parsed::Ignored(
                    "health event that is not an EC2 scheduled change",
                ));
            }
            let deadline = str_at(detail, "/startTime").and_then(parse_time);
            let mut ids: Vec<&str> = detail
                .get("affectedEntities")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e.get("entityValue").and_then(Value::as_str))
                        .collect()
                })
                .unwrap_or_default();
            if ids.is_empty() {
                ids = v
                    .get("resources")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
            }
            let events: Vec<Event> = ids
                .into_iter()
                .filter_map(|r| r.rsplit('/').next())
                .filter(|id| id.starts_with("i-"))
                .map(|id| interruption(id, InterruptionKind::ScheduledChange, deadline))
                .collect();
            if events.is_empty() {
                Err(MalformedEvent::Missing(
                    "detail.affectedEntities[].entityValue",
                ))
            } else {
                Ok(Parsed::Events(events))
            }
        }
        (source, detail_type) => Err(MalformedEvent::Unexpected {
            event_source: source.to_string(),
            detail_type: detail_type.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_unsuccessful_with_ice_message() {
        let body = r#"{"version":"0","id":"1","detail-type":"EC2 Instance Launch Unsuccessful",
          "source":"aws.autoscaling","account":"123456789012","time":"2024-05-01T12:00:00Z",
          "region":"us-east-1","resources":[],
          "detail":{"StatusCode":"Failed","AutoScalingGroupName":"web-spot","ActivityId":"a",
            "Details":{"Availability Zone":"us-east-1b","Subnet ID":"subnet-1"},
            "StatusMessage":"We currently do not have sufficient m5.2xlarge capacity in the Availability Zone you requested (us-east-1b). Our system will be working on provisioning additional capacity.",
            "Cause":"..."}}"#;
        assert_eq!(
            parse_event(body).unwrap(),
            Parsed::Events(vec![Event::LaunchFailed {
                group: "web-spot".into(),
                zone: Some("us-east-1b".into()),
                instance_type: Some("m5.2xlarge".into()),
                reason: LaunchFailureReason::InsufficientInstanceCapacity,
            }])
        );
    }

    #[test]
    fn spot_message_without_type_or_zone() {
        let e = launch_failure(
            "g",
            "Could not launch Spot Instances. InsufficientInstanceCapacity - There is no Spot capacity available that matches your request. Launching EC2 instance failed.",
            None,
        );
        assert_eq!(
            e,
            Event::LaunchFailed {
                group: "g".into(),
                zone: None,
                instance_type: None,
                reason: LaunchFailureReason::InsufficientInstanceCapacity,
            }
        );
        let (t, z) =
            type_and_zone_in("no p4d.24xlarge in eu-west-1c, nor c7gn.metal in us-gov-west-1a");
        assert_eq!(
            (t.as_deref(), z.as_deref()),
            (Some("p4d.24xlarge"), Some("eu-west-1c"))
        );
    }

    #[test]
    fn interruptions() {
        let spot = r#"{"version":"0","id":"2","detail-type":"EC2 Spot Instance Interruption Warning",
          "source":"aws.ec2","time":"2024-05-01T12:00:00Z","region":"us-east-1",
          "resources":["arn:aws:ec2:us-east-1a:instance/i-0abc"],
          "detail":{"instance-id":"i-0abc","instance-action":"terminate"}}"#;
        let Parsed::Events(e) = parse_event(spot).unwrap() else {
            panic!()
        };
        let Event::InstanceInterruption {
            instance_id,
            kind,
            deadline,
            ..
        } = &e[0]
        else {
            panic!()
        };
        assert_eq!(instance_id, "i-0abc");
        assert_eq!(*kind, InterruptionKind::SpotInterruption);
        assert_eq!(deadline.unwrap().as_millis(), 1_714_564_920_000);

        let running = r#"{"source":"aws.ec2","detail-type":"EC2 Instance State-change Notification",
          "detail":{"instance-id":"i-1","state":"running"}}"#;
        assert!(matches!(parse_event(running).unwrap(), Parsed::Ignored(_)));

        let health = r#"{"source":"aws.health","detail-type":"AWS Health Event","time":"2024-05-01T12:00:00Z",
          "resources":["i-1","i-2"],
          "detail":{"service":"EC2","eventTypeCategory":"scheduledChange",
            "eventTypeCode":"AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
            "startTime":"Sat, 05 Jun 2021 15:10:09 GMT",
            "affectedEntities":[{"entityValue":"i-1"},{"entityValue":"i-2"}]}}"#;
        let Parsed::Events(e) = parse_event(health).unwrap() else {
            panic!()
        };
        assert_eq!(e.len(), 2);
        let Event::InstanceInterruption { kind, deadline, .. } = &e[1] else {
            panic!()
        };
        assert_eq!(*kind, InterruptionKind::ScheduledChange);
        assert_eq!(deadline.unwrap().as_millis(), 1_622_905_809_000);
    }

    #[test]
    fn malformed() {
        assert!(matches!(
            parse_event("not json"),
            Err(MalformedEvent::NotJson(_))
        ));
        assert_eq!(
            parse_event(
                r#"{"source":"aws.ec2","detail-type":"EC2 Spot Instance Interruption Warning","detail":{}}"#
            ),
            Err(MalformedEvent::Missing("detail.instance-id"))
        );
        assert!(matches!(
            parse_event(r#"{"source":"x","detail-type":"y","detail":{}}"#),
            Err(MalformedEvent::Unexpected { .. })
        ));
    }
}
