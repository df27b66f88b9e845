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
use crate::falcon::feed::{read_feed, FeedContext, FeedEnd, FeedItem, FeedSettings, FeedStart, HeldRuns};
use crate::falcon::metrics::FalconMetrics;
use crate::falcon::refresh::{refresh_loop, RefreshEnd};

/// A generation that ran at least this long resets the reconnect back-off.
const HEALTHY_GENERATION: Duration = Duration::from_secs(10);
/// First reconnect delay after a failure.
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// Delay before reconnecting after a healthy generation ended normally.
const QUICK_RECONNECT: Duration = Duration::from_millis(100);
/// appIds tried in turn: the configured one, then `<app_id>.1` … `.15`.
pub const APP_ID_SLOTS: usize = 16;
/// How long a held configured appId is waited for at start-up before moving
/// on to a derived one (a just-stopped session of our own may be released).
const APP_ID_PATIENCE: Duration = Duration::from_secs(3);
/// Wait between discoveries while moving through held appIds.
const APP_ID_STEP: Duration = Duration::from_millis(500);

/// Where the caller keeps what it has durably written: the last offset per
/// partition (the source recovers it from its topic).
pub trait CursorStore: Send + Sync {
    /// The last offset durably written for `partition`, if any.
    fn last_written(&self, partition: u32) -> Pin<Box<dyn Future<Output = anyhow::Result<Option<u64>>> + Send + '_>>;

    /// The offset ranges of `partition` already written (inclusive), which a
    /// start at `earliest` or at an offset skips. The default knows none.
    fn held_runs(&self, _partition: u32) -> Pin<Box<dyn Future<Output = anyhow::Result<HeldRuns>> + Send + '_>> {
        Box::pin(async { Ok(HeldRuns::default()) })
    }
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
    held: Mutex<HashMap<u32, Arc<HeldRuns>>>,
    app_ids: Mutex<AppIds>,
}

/// Which appId the client uses. Falcon holds an appId for as long as its
/// session lives, connected or not (until it expires unrefreshed, up to
/// `refreshActiveSessionInterval`, 30 min), so a client that lost its
/// connection, or a restarted process, finds its own dead session blocking it.
/// Offsets do not depend on the appId, so the client moves on to a derived
/// one instead of waiting; only one generation streams at a time, and an
/// abandoned session expires on its own because nothing refreshes it.
#[derive(Debug)]
struct AppIds {
    names: Vec<String>,
    current: usize,
    /// True once a generation streamed on the current appId in this process:
    /// an empty discovery then means our own dead session holds it.
    streamed_on_current: bool,
    /// When the current appId was first found held.
    held_since: Option<Instant>,
    /// Empty discoveries since the last successful one.
    held_in_a_row: usize,
}

impl AppIds {
    fn new(base: &str) -> Self {
        Self {
            names: derived_app_ids(base),
            current: 0,
            streamed_on_current: false,
            held_since: None,
            held_in_a_row: 0,
        }
    }

    fn current(&self) -> &str {
        &self.names[self.current]
    }

    /// After an empty discovery: true when the client should try the next
    /// appId now rather than wait for this one.
    fn held(&mut self) -> bool {
        self.held_in_a_row += 1;
        let since = *self.held_since.get_or_insert_with(Instant::now);
        let move_on = self.streamed_on_current || self.current > 0 || since.elapsed() >= APP_ID_PATIENCE;
        if move_on {
            self.current = (self.current + 1) % self.names.len();
            self.streamed_on_current = false;
        }
        move_on
    }

    /// True when every appId was found held since the last success.
    fn all_held(&self) -> bool {
        self.held_in_a_row >= self.names.len()
    }

    fn streaming(&mut self) {
        self.streamed_on_current = true;
        self.held_since = None;
        self.held_in_a_row = 0;
    }
}

/// The configured appId and the ones derived from it: `<app_id>.<n>`, the base
/// shortened so that each fits the API's 32 characters.
pub fn derived_app_ids(base: &str) -> Vec<String> {
    let mut names = vec![base.to_string()];
    for n in 1..APP_ID_SLOTS {
        let suffix = format!(".{n}");
        let keep = base.len().min(32 - suffix.len());
        names.push(format!("{}{suffix}", &base[..keep]));
    }
    names
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
        let network = config.network();
        let api = crate::net::api_client(config.request_timeout, &agent, &network)?;
        let feed = crate::net::streaming_client(&agent, &network)?;
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
        let app_ids = Mutex::new(AppIds::new(&config.app_id));
        Ok(Self {
            config,
            api,
            feed,
            auth,
            metrics,
            cursors: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            app_ids,
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
        let app_id = self.config.app_id.clone();
        discover(&self.api, &self.discovery_request(&base, &bearer, &app_id)).await
    }

    /// The appId the client uses now.
    pub fn app_id(&self) -> String {
        self.app_ids_lock().current().to_string()
    }

    fn app_ids_lock(&self) -> std::sync::MutexGuard<'_, AppIds> {
        self.app_ids.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn discovery_request<'a>(
        &'a self,
        base: &'a url::Url,
        bearer: &'a crate::secret::Secret,
        app_id: &'a str,
    ) -> DiscoveryRequest<'a> {
        DiscoveryRequest {
            base,
            bearer,
            app_id,
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
        let app_id = self.app_id();
        let resources = match discover(&self.api, &self.discovery_request(&base, &bearer, &app_id)).await {
            Ok(resources) => resources,
            Err(e) => return self.setup_failure(e, *ever_connected),
        };
        if resources.is_empty() {
            FalconMetrics::inc(&self.metrics.discovery_empty);
            return self.app_id_held(&app_id, discovery_backoff);
        }
        discovery_backoff.reset();
        self.app_ids_lock().streaming();
        if app_id != self.config.app_id {
            tracing::info!(
                app_id,
                configured = self.config.app_id,
                "streaming with a derived appId while Falcon still holds the configured one"
            );
        }
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

    /// What to do when discovery answers no streams for `app_id`: Falcon holds
    /// it for a live or a dead session. Try the next appId soon, or wait a
    /// little for this one at start-up, or back off when every one is held.
    fn app_id_held(&self, app_id: &str, discovery_backoff: &mut Backoff) -> Generation {
        let (moved, all_held, next) = {
            let mut ids = self.app_ids_lock();
            let moved = ids.held();
            (moved, ids.all_held(), ids.current().to_string())
        };
        let wait = if all_held {
            discovery_backoff.next_delay()
        } else {
            APP_ID_STEP
        };
        let reason = if moved {
            format!(
                "no streams available for appId {app_id:?}: Falcon still holds it for an earlier session (one that \
                 stopped or lost its connection keeps it until it expires unrefreshed); trying appId {next:?} in \
                 {wait:?} (offsets do not depend on the appId)"
            )
        } else {
            format!(
                "no streams available for appId {app_id:?}: another session holds it (a just-stopped one, or \
                 another instance using the same falcon.app_id); asking again in {wait:?}"
            )
        };
        if all_held {
            tracing::warn!(
                "every appId derived from {:?} is held; an instance with the same falcon.app_id may be running \
                 elsewhere. {reason}",
                self.config.app_id
            );
        } else {
            tracing::warn!("{reason}");
        }
        Generation::Retry {
            reason,
            wait: Some(wait),
            healthy: false,
        }
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
                None => match self.config.initial_offsets.get(&partition) {
                    Some(first) => FeedStart::Offset(*first),
                    None => FeedStart::Oldest,
                },
            },
            StartPosition::Earliest => self.skipping_held(partition, 0, store).await?,
            StartPosition::Latest => FeedStart::Latest,
            StartPosition::Offset(offset) => self.skipping_held(partition, offset, store).await?,
        };
        Ok(start)
    }

    /// A start at `offset` (0: the oldest retained event) that appends only
    /// what the topic does not hold: it starts after a held range it falls in,
    /// and the feed skips the held ranges after it.
    async fn skipping_held(&self, partition: u32, offset: u64, store: &dyn CursorStore) -> anyhow::Result<FeedStart> {
        let held = store.held_runs(partition).await?;
        let from = held.first_not_held(offset);
        if !held.is_empty() {
            tracing::info!(
                partition,
                requested = offset,
                from,
                "starting where the topic's events end; events the topic already holds are skipped"
            );
        }
        if let Ok(mut map) = self.held.lock() {
            map.insert(partition, Arc::new(held));
        }
        Ok(if from == 0 {
            FeedStart::Oldest
        } else {
            FeedStart::Offset(from)
        })
    }

    fn held_of(&self, partition: u32) -> Arc<HeldRuns> {
        self.held
            .lock()
            .ok()
            .and_then(|m| m.get(&partition).cloned())
            .unwrap_or_default()
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
            let held = self.held_of(resource.partition);
            let (ctx, feed_resource, feed_stop) = (ctx.clone(), resource.clone(), stop.clone());
            tasks.spawn(async move {
                let end = read_feed(&ctx, &feed_resource, start, &held, &mut last, &feed_stop).await;
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
