//! The CloudWatch Logs calls through the AWS SDK: `PutLogEvents` to one log
//! stream, creating the group and stream when they are missing and allowed,
//! the group's retention for the request builder, and a harmless
//! `DescribeLogStreams` for `check`.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};
use aws_credential_types::Credentials;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::cloudwatch::config::CloudWatchConfig;
use crate::cloudwatch::error::{classify, fatal, per_event, Answer, Missing, Target};
use crate::cloudwatch::request::GroupRules;
use crate::publish::aws::{sdk_config, service_answer};
use crate::publish::{EventResult, Prepared, RequestFailure, SendResult};

/// The environment variable the SDK reads for this service's endpoint.
pub const ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS";

/// A CloudWatch Logs client bound to one log stream.
#[derive(Debug)]
pub struct CloudWatchService {
    client: aws_sdk_cloudwatchlogs::Client,
    group: String,
    stream: String,
    create_group: bool,
    create_stream: bool,
    retention_days: Option<u32>,
    /// The group's retention as last seen (0: unknown).
    known_retention: AtomicU32,
    /// One creation at a time: concurrent requests all find the stream missing.
    creating: tokio::sync::Mutex<()>,
    region: String,
}

/// The answer to `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reachable {
    /// The stream exists.
    Stream,
    /// The group exists, the stream does not (yet).
    GroupOnly,
    /// Neither exists (yet).
    Nothing,
}

impl CloudWatchService {
    /// Builds the SDK client; credentials come from the default chain (or the
    /// configured profile) unless `credentials` is given.
    pub async fn new(config: &CloudWatchConfig, credentials: Option<Credentials>) -> Result<Self> {
        config.validate()?;
        let settings =
            config
                .aws
                .client_settings("cloudwatch", config.aws.region.clone(), ENDPOINT_ENV, &config.publish)?;
        let sdk_config = sdk_config(&settings, credentials).await?;
        let Some(region) = sdk_config.region().map(|r| r.to_string()) else {
            bail!("cloudwatch.region is not set and no region comes from the environment (AWS_REGION) or the profile");
        };
        Ok(Self {
            client: aws_sdk_cloudwatchlogs::Client::new(&sdk_config),
            group: config.log_group.clone(),
            stream: config.log_stream.clone(),
            create_group: config.create_missing_group,
            create_stream: config.create_missing_stream,
            retention_days: config.retention_days,
            known_retention: AtomicU32::new(0),
            creating: tokio::sync::Mutex::new(()),
            region,
        })
    }

    /// The log group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The log stream.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// What the request builder knows about the group.
    pub fn rules(&self) -> GroupRules {
        let days = self.known_retention.load(Ordering::Relaxed);
        GroupRules {
            retention_days: (days > 0).then_some(days),
        }
    }

    fn target(&self, operation: &'static str) -> Target<'_> {
        Target {
            operation,
            group: &self.group,
            stream: &self.stream,
        }
    }

    fn answer<E>(&self, operation: &'static str, err: &SdkError<E, HttpResponse>) -> Answer
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match service_answer(err, "cloudwatch.request_timeout") {
            Ok(a) => classify(self.target(operation), a.code, a.message, a.status),
            Err(failure) => Answer::Failure(failure),
        }
    }

    /// Reads the group's retention (`DescribeLogGroups`). Best effort: without
    /// the permission or the group, CloudWatch refuses expired events itself and
    /// they are dead-lettered from its answer.
    pub async fn learn_retention(&self) {
        let reply = self
            .client
            .describe_log_groups()
            .log_group_name_prefix(&self.group)
            .send()
            .await;
        match reply {
            Ok(output) => {
                let days = output
                    .log_groups()
                    .iter()
                    .find(|g| g.log_group_name() == Some(self.group.as_str()))
                    .and_then(|g| g.retention_in_days())
                    .and_then(|d| u32::try_from(d).ok());
                self.known_retention.store(days.unwrap_or(0), Ordering::Relaxed);
            }
            Err(e) => tracing::info!(
                group = %self.group,
                error = %crate::falcon::error::error_chain(&e),
                "cannot read the log group's retention (logs:DescribeLogGroups); CloudWatch will refuse expired events and they are dead-lettered then"
            ),
        }
    }

    /// Sends one request; on success, one result per event, in order. A
    /// missing group or stream is created (when allowed) and the request sent
    /// once more.
    pub async fn put(&self, events: &[&Prepared]) -> SendResult {
        let entries = events
            .iter()
            .map(|e| {
                InputLogEvent::builder()
                    .timestamp(e.timestamp_ms)
                    .message(&e.body)
                    .build()
                    .context("building a log event")
            })
            .collect::<Result<Vec<_>>>()
            .map_err(|e| {
                let target = self.target("PutLogEvents");
                RequestFailure::Fatal(fatal(
                    target,
                    "InternalError",
                    &format!("{e:#}"),
                    "report this as a bug".into(),
                ))
            })?;
        match self.put_once(entries.clone()).await {
            Err(Answer::Missing(missing)) => {
                self.create_missing(missing).await?;
                match self.put_once(entries).await {
                    Err(Answer::Missing(_)) => Err(RequestFailure::Transient {
                        code: "ResourceNotFoundException".to_string(),
                        message: format!("log stream {:?} still not found right after creating it", self.stream),
                        throttled: false,
                    }),
                    other => settle(events.len(), other),
                }
            }
            other => settle(events.len(), other),
        }
    }

    async fn put_once(&self, entries: Vec<InputLogEvent>) -> Result<Vec<EventResult>, Answer> {
        let count = entries.len();
        let reply = self
            .client
            .put_log_events()
            .log_group_name(&self.group)
            .log_stream_name(&self.stream)
            .set_log_events(Some(entries))
            .send()
            .await;
        match reply {
            Ok(output) => {
                let info = output.rejected_log_events_info();
                let (new, old, expired) = (
                    info.and_then(|i| i.too_new_log_event_start_index()),
                    info.and_then(|i| i.too_old_log_event_end_index()),
                    info.and_then(|i| i.expired_log_event_end_index()),
                );
                if info.is_some() {
                    tracing::warn!(group = %self.group, stream = %self.stream, too_new_start = ?new, too_old_end = ?old, expired_end = ?expired, "CloudWatch Logs refused some events; dead-lettering exactly those");
                }
                Ok(per_event(count, new, old, expired))
            }
            Err(err) => Err(self.answer("PutLogEvents", &err)),
        }
    }

    /// Creates what is missing, or stops with advice when not allowed.
    async fn create_missing(&self, missing: Missing) -> Result<(), RequestFailure> {
        let _one_at_a_time = self.creating.lock().await;
        if missing == Missing::Group {
            self.create_group().await?;
        }
        self.create_stream().await
    }

    async fn create_group(&self) -> Result<(), RequestFailure> {
        if !self.create_group {
            return Err(RequestFailure::Fatal(fatal(
                self.target("PutLogEvents"),
                "ResourceNotFoundException",
                &format!("The log group {:?} does not exist.", self.group),
                format!(
                    "create it (`aws logs create-log-group --log-group-name {}`) or set cloudwatch.create_missing_group: true",
                    self.group
                ),
            )));
        }
        tracing::info!(group = %self.group, "creating the log group");
        let created = self.client.create_log_group().log_group_name(&self.group).send().await;
        match created.map_err(|e| self.answer("CreateLogGroup", &e)) {
            Ok(_) | Err(Answer::AlreadyDone) => {}
            Err(Answer::Failure(failure)) => return Err(failure),
            Err(Answer::Missing(_)) => return Err(not_found_while_creating("CreateLogGroup")),
        }
        let Some(days) = self.retention_days else { return Ok(()) };
        let set = self
            .client
            .put_retention_policy()
            .log_group_name(&self.group)
            .retention_in_days(i32::try_from(days).unwrap_or(i32::MAX))
            .send()
            .await;
        match set.map_err(|e| self.answer("PutRetentionPolicy", &e)) {
            Ok(_) | Err(Answer::AlreadyDone) => {
                self.known_retention.store(days, Ordering::Relaxed);
                Ok(())
            }
            Err(Answer::Failure(failure)) => Err(failure),
            Err(Answer::Missing(_)) => Err(not_found_while_creating("PutRetentionPolicy")),
        }
    }

    async fn create_stream(&self) -> Result<(), RequestFailure> {
        if !self.create_stream {
            return Err(RequestFailure::Fatal(fatal(
                self.target("PutLogEvents"),
                "ResourceNotFoundException",
                &format!("The log stream {:?} does not exist in {:?}.", self.stream, self.group),
                format!(
                    "create it (`aws logs create-log-stream --log-group-name {} --log-stream-name {}`) or set cloudwatch.create_missing_stream: true",
                    self.group, self.stream
                ),
            )));
        }
        for _ in 0..2 {
            tracing::info!(group = %self.group, stream = %self.stream, "creating the log stream");
            let created = self
                .client
                .create_log_stream()
                .log_group_name(&self.group)
                .log_stream_name(&self.stream)
                .send()
                .await;
            match created.map_err(|e| self.answer("CreateLogStream", &e)) {
                Ok(_) | Err(Answer::AlreadyDone) => return Ok(()),
                Err(Answer::Failure(failure)) => return Err(failure),
                // The group went missing too (or never was): create it first.
                Err(Answer::Missing(_)) => self.create_group().await?,
            }
        }
        Err(not_found_while_creating("CreateLogStream"))
    }

    /// A harmless call that proves credentials, signature, region and access
    /// to the group: `DescribeLogStreams` with the stream's name as prefix.
    pub async fn check(&self) -> Result<Reachable, RequestFailure> {
        let reply = self
            .client
            .describe_log_streams()
            .log_group_name(&self.group)
            .log_stream_name_prefix(&self.stream)
            .send()
            .await;
        match reply {
            Ok(output) => {
                let found = output
                    .log_streams()
                    .iter()
                    .any(|s| s.log_stream_name() == Some(self.stream.as_str()));
                Ok(if found { Reachable::Stream } else { Reachable::GroupOnly })
            }
            Err(err) => match self.answer("DescribeLogStreams", &err) {
                Answer::Missing(_) => Ok(Reachable::Nothing),
                Answer::AlreadyDone => Ok(Reachable::Stream),
                Answer::Failure(failure) => Err(failure),
            },
        }
    }

    /// Whether the sink may create the group / the stream.
    pub fn creates(&self) -> (bool, bool) {
        (self.create_group, self.create_stream)
    }
}

fn settle(count: usize, answer: Result<Vec<EventResult>, Answer>) -> SendResult {
    match answer {
        Ok(results) => Ok(results),
        Err(Answer::AlreadyDone) => Ok(vec![EventResult::Stored(None); count]),
        Err(Answer::Failure(failure)) => Err(failure),
        Err(Answer::Missing(_)) => Err(not_found_while_creating("PutLogEvents")),
    }
}

fn not_found_while_creating(operation: &str) -> RequestFailure {
    RequestFailure::Transient {
        code: "ResourceNotFoundException".to_string(),
        message: format!("{operation} found the log group missing while creating it; retrying"),
        throttled: false,
    }
}
