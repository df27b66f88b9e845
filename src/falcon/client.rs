//! The Falcon Event Streams client: authenticate, discover, read every partition,
//! refresh sessions, and on any failure start a new generation that resumes each
//! partition right after the last event it delivered.
//!
//! All feeds of a generation stop together because the API holds an appId
//! exclusively: re-discovery only succeeds once no feed of the old generation is
//! open, so a partial restart could never get new session tokens.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::falcon::auth::{Auth, AuthSettings};
use crate::falcon::config::{FalconConfig, StartPosition};
use crate::falcon::discovery::{discover, DiscoveryRequest, StreamResource};
use crate::falcon::error::FalconError;
use crate::falcon::feed::{read_feed, FeedContext, FeedEnd, FeedItem, FeedSettings, FeedStart};
use crate::falcon::metrics::FalconMetrics;
use crate::falcon::refresh::{refresh_loop, RefreshEnd};

/// A generation that ran at least this long resets the reconnect back-off.
const HEALTHY_GENERATION: Duration = Duration::from_secs(10);
/// First reconnect delay after a failure.
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// Delay before reconnecting after a healthy generation ended normally.
const QUICK_RECONNECT: Duration = Duration::from_millis(100);

/// Where the caller keeps what it has durably written: the last offset per
/// partition (the source recovers it from its topic).
pub trait CursorStore: Send + Sync {
    /// The last offset durably written for `partition`, if any.
    fn last_written(&self, partition: u32) -> Pin<Box<dyn Future<Output = anyhow::Result<Option<u64>>> + Send + '_>>;
}

/// A [`CursorStore`] that knows nothing: every partition starts per `start`.
#[derive(Debug, Default, Clone)]
pub struct NoCursors;

impl CursorStore for NoCursors {
    fn last_written(&self, _partition: u32) -> Pin<Box<dyn Future<Output = anyhow::Result<Option<u64>>> + Send + '_>> {
        Box::pin(async { Ok(None) })
    }
}

/// The client. Cheap to share; [`FalconClient::run`] drives it.
#[derive(Debug)]
pub struct FalconClient {
    config: FalconConfig,
    api: reqwest::Client,
    feed: reqwest::Client,
    auth: Arc<Auth>,
    metrics: Arc<FalconMetrics>,
    cursors: Mutex<HashMap<u32, Option<u64>>>,
}

/// How one generation ended.
enum Generation {
    Stop,
    Fatal(FalconError),
    Retry {
        reason: String,
        wait: Option<Duration>,
        healthy: bool,
    },
}

/// What a partition task reported.
enum TaskEnd {
    Feed(u32, FeedEnd),
    Refresh(u32, RefreshEnd),
}

impl FalconClient {
    /// Builds a client from a validated configuration.
    pub fn new(config: FalconConfig, metrics: Arc<FalconMetrics>) -> anyhow::Result<Self> {
        config.validate()?;
        if let (Some(base), Some(cloud)) = (&config.base_url, config.cloud) {
            tracing::info!(base_url = %base, cloud = %cloud.name(), "falcon.base_url overrides falcon.cloud");
        }
        let agent = crate::net::user_agent();
        let api = crate::net::api_client(config.request_timeout, &agent)?;
        let feed = crate::net::streaming_client(&agent)?;
        let settings = AuthSettings {
            base: config.api_base(),
            client_id: config.client_id.clone(),
            secret: config.client_secret.clone(),
            member_cid: config.member_cid.clone(),
            autodiscover: config.autodiscover_region,
            allow_insecure_http: config.allow_insecure_http,
            rate_limit_wait: config.rate_limit_wait,
        };
        let auth = Arc::new(Auth::new(api.clone(), settings, metrics.clone()));
        Ok(Self {
            config,
            api,
            feed,
            auth,
            metrics,
            cursors: Mutex::new(HashMap::new()),
        })
    }

    /// The client's counters.
    pub fn metrics(&self) -> &Arc<FalconMetrics> {
        &self.metrics
    }

    /// The token manager (for connectivity checks).
    pub fn auth(&self) -> &Arc<Auth> {
        &self.auth
    }

    /// Lists the streams once, for connectivity checks.
    pub async fn discover_once(&self) -> Result<Vec<StreamResource>, FalconError> {
        let bearer = self.auth.token().await?;
        let base = self.auth.base_url();
        discover(&self.api, &self.discovery_request(&base, &bearer)).await
    }

    fn discovery_request<'a>(&'a self, base: &'a url::Url, bearer: &'a crate::secret::Secret) -> DiscoveryRequest<'a> {
        DiscoveryRequest {
            base,
            bearer,
            app_id: &self.config.app_id,
            allow_insecure_http: self.config.allow_insecure_http,
            rate_limit_wait: self.config.rate_limit_wait,
        }
    }

    /// Reads every partition until `cancel` fires, sending batches to `out`.
    /// Returns an error only for what retrying cannot fix (bad credentials at
    /// start-up, misconfiguration).
    pub async fn run(
        &self,
        store: &dyn CursorStore,
        out: mpsc::Sender<Vec<FeedItem>>,
        cancel: CancellationToken,
    ) -> Result<(), FalconError> {
        let mut backoff = Backoff::new(FIRST_RETRY, self.config.reconnect_backoff_max);
        let mut discovery_backoff = Backoff::new(Duration::from_secs(1), self.config.discovery_backoff_max);
        let mut ever_connected = false;
        loop {
            if cancel.is_cancelled() {
                return Ok(());
            }
            let generation = self
                .generation(store, &out, &cancel, &mut discovery_backoff, &mut ever_connected)
                .await;
            let (reason, wait, healthy) = match generation {
                Generation::Stop => return Ok(()),
                Generation::Fatal(e) => return Err(e),
                Generation::Retry { reason, wait, healthy } => (reason, wait, healthy),
            };
            let delay = match (wait, healthy) {
                (Some(wait), _) => wait,
                (None, true) => {
                    backoff.reset();
                    QUICK_RECONNECT
                }
                (None, false) => backoff.next_delay(),
            };
            FalconMetrics::inc(&self.metrics.reconnects);
            tracing::info!(%reason, delay_ms = delay.as_millis() as u64, "reconnecting to Falcon (new token, new discovery)");
            self.auth.invalidate().await;
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn generation(
        &self,
        store: &dyn CursorStore,
        out: &mpsc::Sender<Vec<FeedItem>>,
        cancel: &CancellationToken,
        discovery_backoff: &mut Backoff,
        ever_connected: &mut bool,
    ) -> Generation {
        let bearer = match self.auth.token().await {
            Ok(token) => token,
            Err(e) => return self.setup_failure(e, *ever_connected),
        };
        let base = self.auth.base_url();
        FalconMetrics::inc(&self.metrics.discoveries);
        let resources = match discover(&self.api, &self.discovery_request(&base, &bearer)).await {
            Ok(resources) => resources,
            Err(e) => return self.setup_failure(e, *ever_connected),
        };
        if resources.is_empty() {
            FalconMetrics::inc(&self.metrics.discovery_empty);
            let wait = discovery_backoff.next_delay();
            let reason = format!(
                "no streams available for appId {:?}: another session holds it (a just-stopped one lingers for \
                 a few minutes, or another instance uses the same falcon.app_id); retrying in {wait:?}",
                self.config.app_id
            );
            tracing::warn!("{reason}");
            return Generation::Retry {
                reason,
                wait: Some(wait),
                healthy: false,
            };
        }
        discovery_backoff.reset();
        let mut starts = Vec::with_capacity(resources.len());
        for resource in &resources {
            match self.start_of(resource.partition, store).await {
                Ok(start) => starts.push(start),
                Err(e) => {
                    return Generation::Retry {
                        reason: format!("reading partition {}'s cursor: {e:#}", resource.partition),
                        wait: None,
                        healthy: false,
                    }
                }
            }
        }
        *ever_connected = true;
        self.stream_all(resources, starts, out, cancel).await
    }

    /// Maps an authentication or discovery error to what the loop does next.
    fn setup_failure(&self, error: FalconError, ever_connected: bool) -> Generation {
        match error {
            FalconError::CredentialsRejected { .. } | FalconError::Forbidden { .. } if !ever_connected => {
                Generation::Fatal(error)
            }
            FalconError::CredentialsRejected { .. } | FalconError::Forbidden { .. } => {
                tracing::error!(error = %error, "Falcon refused the API client; retrying slowly");
                let wait = self.config.rate_limit_wait.max(Duration::from_secs(1));
                Generation::Retry {
                    reason: error.to_string(),
                    wait: Some(wait),
                    healthy: false,
                }
            }
            FalconError::RateLimited { wait, .. } => {
                FalconMetrics::inc(&self.metrics.rate_limited);
                Generation::Retry {
                    reason: error.to_string(),
                    wait: Some(wait),
                    healthy: false,
                }
            }
            FalconError::Fatal(_) => Generation::Fatal(error),
            FalconError::Unauthorized { .. } | FalconError::Transient { .. } => Generation::Retry {
                reason: error.to_string(),
                wait: None,
                healthy: false,
            },
        }
    }

    /// Where a partition's feed starts: right after the last delivered event, else
    /// the configured position (for `resume`: right after the last written one).
    async fn start_of(&self, partition: u32, store: &dyn CursorStore) -> anyhow::Result<FeedStart> {
        if let Some(Some(last)) = self.cursor(partition) {
            return Ok(FeedStart::Offset(last.saturating_add(1)));
        }
        let start = match self.config.start_for(partition) {
            StartPosition::Resume => match store.last_written(partition).await? {
                Some(last) => {
                    tracing::info!(partition, last, "resuming after the last event in the topic");
                    FeedStart::Offset(last.saturating_add(1))
                }
                None => FeedStart::Oldest,
            },
            StartPosition::Earliest => FeedStart::Oldest,
            StartPosition::Latest => FeedStart::Latest,
            StartPosition::Offset(offset) => FeedStart::Offset(offset),
        };
        Ok(start)
    }

    fn cursor(&self, partition: u32) -> Option<Option<u64>> {
        self.cursors.lock().ok().and_then(|c| c.get(&partition).copied())
    }

    fn set_cursor(&self, partition: u32, last: Option<u64>) {
        if let (Ok(mut cursors), Some(_)) = (self.cursors.lock(), last) {
            cursors.insert(partition, last);
        }
    }

    /// Runs one feed and one refresher per partition until the first ends.
    async fn stream_all(
        &self,
        resources: Vec<StreamResource>,
        starts: Vec<FeedStart>,
        out: &mpsc::Sender<Vec<FeedItem>>,
        cancel: &CancellationToken,
    ) -> Generation {
        let began = Instant::now();
        let stop = cancel.child_token();
        let ctx = Arc::new(FeedContext {
            http: self.feed.clone(),
            settings: FeedSettings {
                event_types: self.config.event_types.clone(),
                idle_timeout: self.config.idle_timeout,
                max_line_bytes: usize::try_from(self.config.max_line_bytes).unwrap_or(usize::MAX),
                rate_limit_wait: self.config.rate_limit_wait,
            },
            metrics: self.metrics.clone(),
            out: out.clone(),
        });
        let mut tasks: JoinSet<(TaskEnd, Option<u64>)> = JoinSet::new();
        for (resource, start) in resources.into_iter().zip(starts) {
            let resource = Arc::new(resource);
            let mut last = self.cursor(resource.partition).flatten();
            let (ctx, feed_resource, feed_stop) = (ctx.clone(), resource.clone(), stop.clone());
            tasks.spawn(async move {
                let end = read_feed(&ctx, &feed_resource, start, &mut last, &feed_stop).await;
                (TaskEnd::Feed(feed_resource.partition, end), last)
            });
            let (api, auth, metrics, refresh_stop) =
                (self.api.clone(), self.auth.clone(), self.metrics.clone(), stop.clone());
            tasks.spawn(async move {
                let end = refresh_loop(&api, &auth, &resource, &metrics, &refresh_stop).await;
                (TaskEnd::Refresh(resource.partition, end), None)
            });
        }
        let mut first: Option<TaskEnd> = None;
        while let Some(joined) = tasks.join_next().await {
            let Ok((end, last)) = joined else { continue };
            if let TaskEnd::Feed(partition, _) = &end {
                self.set_cursor(*partition, last);
            }
            if first.is_none() {
                stop.cancel();
                first = Some(end);
            }
        }
        let healthy = began.elapsed() >= HEALTHY_GENERATION;
        match first {
            None => Generation::Retry {
                reason: "no partition task ran".into(),
                wait: None,
                healthy,
            },
            Some(end) => self.generation_end(end, healthy, cancel.is_cancelled()),
        }
    }

    fn generation_end(&self, end: TaskEnd, healthy: bool, cancelled: bool) -> Generation {
        if cancelled {
            return Generation::Stop;
        }
        let retry = |reason: String| Generation::Retry {
            reason,
            wait: None,
            healthy,
        };
        match end {
            TaskEnd::Feed(_, FeedEnd::Cancelled) | TaskEnd::Refresh(_, RefreshEnd::Cancelled) => {
                retry("a partition task was cancelled".into())
            }
            TaskEnd::Feed(_, FeedEnd::ConsumerGone) => Generation::Stop,
            TaskEnd::Feed(p, FeedEnd::Eof) => retry(format!("partition {p}: the server ended the stream")),
            TaskEnd::Feed(p, FeedEnd::Broken(why)) => Generation::Retry {
                reason: format!("partition {p}: connection broke ({why})"),
                wait: None,
                healthy: false,
            },
            TaskEnd::Feed(p, FeedEnd::Idle(after)) => Generation::Retry {
                reason: format!("partition {p}: nothing received for {after:?} (idle watchdog)"),
                wait: None,
                healthy: false,
            },
            TaskEnd::Feed(p, FeedEnd::Unauthorized(message)) => retry(format!(
                "partition {p}: feed answered HTTP 401 ({message}); session token no longer valid"
            )),
            TaskEnd::Feed(p, FeedEnd::RateLimited(wait)) => {
                FalconMetrics::inc(&self.metrics.rate_limited);
                Generation::Retry {
                    reason: format!("partition {p}: feed answered HTTP 429"),
                    wait: Some(wait),
                    healthy: false,
                }
            }
            TaskEnd::Feed(p, FeedEnd::Http(status, message)) => Generation::Retry {
                reason: format!("partition {p}: feed answered HTTP {status} ({message})"),
                wait: None,
                healthy: false,
            },
            TaskEnd::Refresh(p, RefreshEnd::SessionGone) => retry(format!(
                "partition {p}: session refresh answered HTTP 404 (session gone)"
            )),
            TaskEnd::Refresh(p, RefreshEnd::Failed(why)) => Generation::Retry {
                reason: format!("partition {p}: session refresh failed ({why})"),
                wait: None,
                healthy: false,
            },
        }
    }
}
