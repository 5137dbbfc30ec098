//! The SQS consumer: long-polls the queue the EventBridge rules feed, turns messages into
//! core events, counts and drops malformed ones, and deletes messages once handled.

use crate::api::{Api, Op};
use crate::discovery::Scan;
use crate::error::AwsError;
use crate::events::{parse_event, Parsed};
use autoscaler_core::Event;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// One core event from the queue.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedEvent {
    /// The event for the core.
    pub event: Event,
    /// The SQS message it came from.
    pub message_id: String,
    /// When `ReceiveMessage` returned it.
    pub received_at: Instant,
}

/// A message to delete once its events are handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    message_id: String,
    handle: String,
    received_at: Instant,
    events: usize,
}

/// What one poll brought.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// Core events, in message order.
    pub events: Vec<ReceivedEvent>,
    /// Messages to delete with [`EventQueue::ack`] once the events are handled
    /// (malformed and ignored messages are included: they are dropped).
    pub receipts: Vec<Receipt>,
}

/// Consumer settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// Queue URL.
    pub queue_url: String,
    /// Long-poll wait (SQS allows up to 20 s).
    pub wait: Duration,
    /// Messages per receive (SQS allows up to 10).
    pub max_messages: i32,
    /// Visibility timeout: how long a received message stays hidden before redelivery.
    pub visibility_timeout: Duration,
}

impl QueueConfig {
    /// Defaults for `queue_url`: 20 s long polls, 10 messages, 60 s visibility.
    pub fn new(queue_url: impl Into<String>) -> Self {
        QueueConfig {
            queue_url: queue_url.into(),
            wait: Duration::from_secs(20),
            max_messages: 10,
            visibility_timeout: Duration::from_secs(60),
        }
    }
}

/// The instances known from the latest scan, to add zone and type to interruptions.
#[derive(Default, Debug)]
struct Directory {
    instances: HashMap<String, (String, String)>,
}

/// The SQS consumer.
#[derive(Debug)]
pub struct EventQueue {
    api: Arc<Api>,
    config: QueueConfig,
    directory: RwLock<Directory>,
}

impl EventQueue {
    /// A consumer of `config.queue_url`.
    pub fn new(api: Arc<Api>, config: QueueConfig) -> Self {
        EventQueue {
            api,
            config,
            directory: RwLock::new(Directory::default()),
        }
    }

    /// Remembers the zone and type of every instance of a scan, so interruption events
    /// carry them.
    pub fn learn(&self, scan: &Scan) {
        let instances = scan
            .groups
            .iter()
            .flat_map(|g| g.instances.iter())
            .map(|i| (i.id.clone(), (i.zone.clone(), i.instance_type.clone())))
            .collect();
        if let Ok(mut d) = self.directory.write() {
            d.instances = instances;
        }
    }

    fn enrich(&self, event: &mut Event) {
        if let Event::InstanceInterruption {
            instance_id,
            zone,
            instance_type,
            ..
        } = event
        {
            if let Ok(d) = self.directory.read() {
                if let Some((z, t)) = d.instances.get(instance_id.as_str()) {
                    zone.get_or_insert_with(|| z.clone());
                    instance_type.get_or_insert_with(|| t.clone());
                }
            }
        }
    }

    /// One long poll. Malformed messages are counted, logged with their id, and put in
    /// the receipts so [`EventQueue::ack`] drops them.
    pub async fn poll(&self) -> Result<Batch, AwsError> {
        let wait = i32::try_from(self.config.wait.as_secs().min(20)).unwrap_or(20);
        let visibility = i32::try_from(self.config.visibility_timeout.as_secs()).unwrap_or(60);
        let out = self
            .api
            .call(
                Op::ReceiveMessage,
                self.api
                    .sqs
                    .receive_message()
                    .queue_url(&self.config.queue_url)
                    .wait_time_seconds(wait)
                    .max_number_of_messages(self.config.max_messages.clamp(1, 10))
                    .visibility_timeout(visibility)
                    .send(),
            )
            .await?;
        let received_at = Instant::now();
        let metrics = self.api.metrics();
        let mut batch = Batch::default();
        metrics.record_received(out.messages().len() as u64);
        for m in out.messages() {
            let message_id = m.message_id().unwrap_or("<no id>").to_string();
            let Some(handle) = m.receipt_handle() else {
                tracing::warn!(message_id, "SQS message without receipt handle");
                continue;
            };
            let mut n = 0;
            match parse_event(m.body().unwrap_or_default()) {
                Ok(Parsed::Events(events)) => {
                    for mut event in events {
                        self.enrich(&mut event);
                        tracing::debug!(message_id, ?event, "event received");
                        batch.events.push(ReceivedEvent {
                            event,
                            message_id: message_id.clone(),
                            received_at,
                        });
                        n += 1;
                    }
                }
                Ok(Parsed::Ignored(why)) => {
                    metrics.record_ignored();
                    tracing::debug!(message_id, why, "event ignored");
                }
                Err(problem) => {
                    metrics.record_malformed();
                    tracing::warn!(message_id, %problem, "malformed event message dropped");
                }
            }
            batch.receipts.push(Receipt {
                message_id,
                handle: handle.to_string(),
                received_at,
                events: n,
            });
        }
        Ok(batch)
    }

    /// Deletes handled messages (10 per call) and records the receipt-to-handled latency
    /// of their events.
    pub async fn ack(&self, receipts: &[Receipt]) -> Result<(), AwsError> {
        let metrics = self.api.metrics();
        for r in receipts {
            for _ in 0..r.events {
                metrics.record_delivered(r.received_at.elapsed());
            }
        }
        for chunk in receipts.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&r.handle)
                        .build()
                        .map_err(|e| AwsError::Config(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .api
                .call(
                    Op::DeleteMessageBatch,
                    self.api
                        .sqs
                        .delete_message_batch()
                        .queue_url(&self.config.queue_url)
                        .set_entries(Some(entries))
                        .send(),
                )
                .await?;
            for f in out.failed() {
                let id = f.id().parse::<usize>().ok().and_then(|i| chunk.get(i));
                tracing::warn!(
                    message_id = id.map(|r| r.message_id.as_str()),
                    code = f.code(),
                    "SQS message not deleted; it will be delivered again"
                );
            }
        }
        Ok(())
    }

    /// Polls until `batches` is closed, sending each non-empty batch. Nothing is deleted
    /// here: the receiver calls [`EventQueue::ack`] once the batch's events are handled
    /// (at-least-once: a message whose events were not handled comes back after the
    /// visibility timeout). Errors are logged and retried after a pause, so a bad moment
    /// does not end it.
    pub async fn run(self: Arc<Self>, batches: mpsc::Sender<Batch>) {
        loop {
            match self.poll().await {
                Ok(batch) => {
                    if !batch.receipts.is_empty() && batches.send(batch).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(%e, "SQS receive failed; retrying in 5 s");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
            if batches.is_closed() {
                return;
            }
        }
    }
}
