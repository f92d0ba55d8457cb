//! The admin HTTP API (status, membership changes, snapshots), the health
//! endpoints and `/metrics`, all on the admin port; plus the CLI's client.
//!
//! Membership changes must run on the leader. A member that is not the
//! leader proxies the call to the leader's admin address, so operators may
//! point the CLI at any member.

pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::errors::{InitializeError, RaftError};
use serde::{Deserialize, Serialize};

use crate::node::membership::{self, MembershipError};
use crate::node::{handover, Node};
use crate::peer::admin_client;
use crate::raft::NodeId;

/// Why an admin call failed; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No leader is known, so the change cannot be made now.
    #[error("no leader is known; retry once the cluster has elected one")]
    NoLeader,
    /// The request itself is wrong.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The cluster is already initialised.
    #[error("cluster is already initialised: {0}")]
    AlreadyInitialized(String),
    /// The leader could not be reached to proxy the call.
    #[error("cannot reach the leader at {addr}: {message}")]
    Proxy {
        /// The leader's admin address.
        addr: String,
        /// What failed.
        message: String,
    },
    /// The change would put data or availability at risk; the message says
    /// which rule refused it and what to do instead.
    #[error("refused: {0}")]
    Unsafe(String),
    /// A membership change or hand-off was refused or failed.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// The leader answered a proxied call with an error; relayed unchanged.
    #[error("{}", body.error)]
    Relayed {
        /// The leader's HTTP status.
        status: u16,
        /// The leader's error document.
        body: ErrorBody,
    },
    /// Raft failed in another way.
    #[error("raft: {0}")]
    Raft(String),
}

impl AdminError {
    /// Whether repeating the same call later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            AdminError::NoLeader | AdminError::Proxy { .. } => true,
            AdminError::Relayed { body, .. } => body.retryable,
            AdminError::Membership(e) => e.retryable(),
            _ => false,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            AdminError::NoLeader | AdminError::Proxy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::AlreadyInitialized(_) => StatusCode::CONFLICT,
            AdminError::Membership(e) => membership_status(e),
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            // 412: the cluster is not in a state where this change is safe.
            AdminError::Unsafe(_) => StatusCode::PRECONDITION_FAILED,
            AdminError::Relayed { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            AdminError::Raft(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

pub use crate::peer::admin_client::ErrorBody;

/// One status per membership refusal.
fn membership_status(e: &MembershipError) -> StatusCode {
    match e {
        MembershipError::NoLeader | MembershipError::Unreachable { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        MembershipError::ChangeInProgress(_) | MembershipError::TargetDraining(_) => {
            StatusCode::CONFLICT
        }
        MembershipError::UnknownNode(_) => StatusCode::NOT_FOUND,
        MembershipError::BadRequest(_) => StatusCode::BAD_REQUEST,
        // 412: the cluster is not in a state where this change is safe.
        MembershipError::Unsafe(_) => StatusCode::PRECONDITION_FAILED,
        MembershipError::Raft(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.to_string(),
            retryable: self.retryable(),
        };
        (self.status(), Json(body)).into_response()
    }
}

/// A member in admin requests: the same shape as a configured initial member.
pub use crate::config::InitialMember as MemberSpec;

/// Body of `init`: the voters; empty means "just this node".
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct InitRequest {
    /// Initial voters.
    #[serde(default)]
    pub members: Vec<MemberSpec>,
}

pub use crate::node::membership::{
    ChangeReply, JoinRequest, NodeRequest, ReplaceRequest, TransferRequest,
};

/// The state of the duties that the admin API reports: each duty owns
/// its own, and `server` hands it here.
#[derive(Clone, Default)]
pub struct Duties {
    /// The drain's single outcome.
    pub drain: Arc<crate::drain::Drain>,
    /// What this node's exporters are doing.
    pub export: crate::export::Registry,
    /// What this node's archiver is doing.
    pub archive: crate::archive::progress::Progress,
    /// On a witness: what it knows of each data voter's progress.
    pub witness: Arc<crate::witness::Floors>,
}

/// The admin API's state: the node, and the duties' views.
#[derive(Clone)]
pub struct AdminState {
    /// The node.
    pub node: Arc<Node>,
    /// The duties' state.
    pub duties: Duties,
}

impl axum::extract::FromRef<AdminState> for Arc<Node> {
    fn from_ref(state: &AdminState) -> Arc<Node> {
        state.node.clone()
    }
}

impl axum::extract::FromRef<AdminState> for Duties {
    fn from_ref(state: &AdminState) -> Duties {
        state.duties.clone()
    }
}

/// Builds the admin router for `node`, reporting `duties`.
///
/// The health endpoints are always open. With `[auth]`, `/admin/v1/*`
/// needs an admin token, and `/metrics` too with `auth.protect_metrics`.
pub fn router(node: Arc<Node>, duties: Duties) -> Router {
    let state = AdminState {
        node: node.clone(),
        duties,
    };
    let mut api = api_routes();
    let mut metrics_route = Router::new().route("/metrics", get(metrics));
    if node.tokens().is_some() {
        let guard = axum::middleware::from_fn_with_state(node.clone(), require_admin_token);
        api = api.route_layer(guard.clone());
        if node.config().auth.protect_metrics {
            metrics_route = metrics_route.route_layer(guard);
        }
    }
    Router::new()
        .route("/health/live", get(|| async { "ok\n" }))
        .route("/health/ready", get(ready))
        .merge(metrics_route)
        .merge(api)
        .with_state(state)
}

/// Refuses an admin call without an admin token: 401, or 403 for an
/// ingest token.
async fn require_admin_token(
    State(node): State<Arc<Node>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(tokens) = node.tokens() else {
        return next.run(request).await;
    };
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match tokens.check(header, crate::auth::Scope::Admin) {
        Ok(()) => next.run(request).await,
        Err(e) => {
            tracing::warn!(path = %request.uri().path(), reason = %e, "admin call refused");
            let status = if e.forbidden() {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::UNAUTHORIZED
            };
            let body = ErrorBody {
                error: e.to_string(),
                retryable: false,
            };
            (status, [(header::WWW_AUTHENTICATE, "Bearer")], Json(body)).into_response()
        }
    }
}

/// The `/admin/v1/*` routes.
fn api_routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/v1/status", get(status))
        .route("/admin/v1/dead-letters", get(dead_letters))
        .route("/admin/v1/init", post(init))
        .route("/admin/v1/add-learner", post(add_learner))
        .route("/admin/v1/add-witness", post(add_witness))
        .route("/admin/v1/promote", post(promote))
        .route("/admin/v1/remove", post(remove))
        .route("/admin/v1/replace", post(replace))
        .route("/admin/v1/transfer-leader", post(transfer_leader))
        .route("/admin/v1/witness-handover", post(witness_handover))
        .route("/admin/v1/snapshot", post(snapshot))
        .route("/admin/v1/drain", post(drain))
}

/// Serves the admin API on `listener` (plain or TLS) until `shutdown`
/// resolves.
pub async fn serve(
    listener: crate::tls::Incoming,
    node: Arc<Node>,
    duties: Duties,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let connections = node.config().connections.clone();
    crate::tls::serve_http(listener, router(node, duties), &connections, shutdown).await
}

/// Why `/health/ready` fails, if it does: the node's own readiness, then
/// an archive that is misconfigured. A store that refuses us for good
/// (credentials, bucket) would stall the archive and then trimming, and a
/// per-node archive directory splits the archive: say so instead of
/// looking healthy.
pub(crate) fn not_ready(node: &Node, duties: &Duties) -> Option<String> {
    if let Err(why) = node.readiness() {
        return Some(why);
    }
    duties
        .archive
        .snapshot()
        .misconfigured
        .map(|problem| format!("archive misconfigured: {problem}"))
}

async fn ready(State(node): State<Arc<Node>>, State(duties): State<Duties>) -> Response {
    match not_ready(&node, &duties) {
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
        None => (StatusCode::OK, "ready\n").into_response(),
    }
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        node.metrics().render(),
    )
        .into_response()
}

async fn status(
    State(node): State<Arc<Node>>,
    State(duties): State<Duties>,
) -> Json<status::Status> {
    Json(status::Status::of(&node, &duties))
}

/// The dead-letter record of every sink, from this node's applied state:
/// counts by reason and the newest items.
async fn dead_letters(State(node): State<Arc<Node>>) -> Json<BTreeMap<String, DeadLetterReport>> {
    let state = node.state();
    Json(
        state
            .sinks
            .into_iter()
            .map(|(name, s)| {
                (
                    name,
                    DeadLetterReport {
                        counts: s.dead_letter_counts,
                        newest: s.dead_letters.into_iter().collect(),
                    },
                )
            })
            .collect(),
    )
}

/// One sink's dead-letter record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetterReport {
    /// Every dead-lettered item, counted by reason code.
    pub counts: BTreeMap<String, u64>,
    /// The newest items (at most `store::DEAD_LETTERS_KEPT`), oldest first.
    pub newest: Vec<crate::state::DeadLetterItem>,
}

async fn init(
    State(node): State<Arc<Node>>,
    Json(req): Json<InitRequest>,
) -> Result<Json<ChangeReply>, AdminError> {
    let members = if req.members.is_empty() {
        BTreeMap::from([(node.id(), node.member())])
    } else {
        crate::node::members_map(&req.members)
    };
    if members.keys().any(|id| *id == 0) {
        return Err(AdminError::BadRequest("node id 0 is reserved".into()));
    }
    if members
        .values()
        .all(|m| m.role == crate::raft::Role::Witness)
    {
        return Err(AdminError::Unsafe(
            "the voters include no data node, and a witness never leads".into(),
        ));
    }
    // An explicit init is the operator's word that this node starts the
    // cluster: it takes part in Raft from now on (see `Node::is_admitted`).
    node.gate().admit();
    match node.raft().initialize(members.clone()).await {
        Ok(()) => Ok(Json(ChangeReply {
            message: format!(
                "initialised with voters {:?}",
                members.keys().collect::<Vec<_>>()
            ),
            log_index: None,
        })),
        Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
            Err(AdminError::AlreadyInitialized(e.to_string()))
        }
        Err(RaftError::APIError(e)) => Err(AdminError::BadRequest(e.to_string())),
        Err(e) => Err(AdminError::Raft(e.to_string())),
    }
}

/// Runs `local` when this node leads, otherwise proxies `path` with `body`
/// to the leader's admin API and relays its answer as it is.
async fn on_leader<B, F, Fut>(
    node: &Node,
    path: &str,
    body: &B,
    local: F,
) -> Result<Json<ChangeReply>, AdminError>
where
    B: Serialize,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<ChangeReply, MembershipError>>,
{
    match node.leader() {
        None => Err(AdminError::NoLeader),
        Some((id, _)) if id == node.id() => local().await.map(Json).map_err(AdminError::from),
        Some((_, leader)) => proxy(node, &leader.admin_addr, path, body).await,
    }
}

async fn proxy<B: Serialize>(
    node: &Node,
    admin_addr: &str,
    path: &str,
    body: &B,
) -> Result<Json<ChangeReply>, AdminError> {
    let proxy_error = |message: String| AdminError::Proxy {
        addr: admin_addr.to_string(),
        message,
    };
    node.admin_client(admin_addr, admin_client::MEMBERSHIP_TIMEOUT)
        .map_err(|e| proxy_error(e.to_string()))?
        .post_json::<_, ChangeReply>(path, body)
        .await
        .map(Json)
        .map_err(|e| match e {
            admin_client::ClientError::Api { status, body } => AdminError::Relayed { status, body },
            other => AdminError::Proxy {
                addr: admin_addr.to_string(),
                message: other.to_string(),
            },
        })
}

/// When this node leads and is the one leaving, hands leadership to another
/// data voter and sends the call there; otherwise runs it as usual.
async fn leaving_leader<B, F, Fut>(
    node: &Node,
    leaving: NodeId,
    path: &str,
    body: &B,
    local: F,
) -> Result<Json<ChangeReply>, AdminError>
where
    B: Serialize,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<ChangeReply, MembershipError>>,
{
    if node.leader().is_some_and(|(id, _)| id == node.id()) && leaving == node.id() {
        let to = membership::step_aside(node, leaving).await?;
        tracing::info!(
            leaving,
            new_leader = to,
            "leader stepped aside before leaving"
        );
        let Some((_, member)) = node.leader().filter(|(id, _)| *id == to) else {
            return Err(AdminError::NoLeader);
        };
        return proxy(node, &member.admin_addr, path, body).await;
    }
    on_leader(node, path, body, local).await
}

async fn add_learner(
    State(node): State<Arc<Node>>,
    Json(req): Json<JoinRequest>,
) -> Result<Json<ChangeReply>, AdminError> {
    on_leader(&node, "/admin/v1/add-learner", &req, || {
        membership::add_learner(&node, req.clone())
    })
    .await
}

async fn add_witness(
    State(node): State<Arc<Node>>,
    Json(req): Json<JoinRequest>,
) -> Result<Json<ChangeReply>, AdminError> {
    on_leader(&node, "/admin/v1/add-witness", &req, || {
        membership::add_witness(&node, req.clone())
    })
    .await
}

async fn promote(
    State(node): State<Arc<Node>>,
    Json(req): Json<NodeRequest>,
) -> Result<Json<ChangeReply>, AdminError> {
    on_leader(&node, "/admin/v1/promote", &req, || {
        membership::promote(&node, req.clone())
    })
    .await
}

async fn remove(
    State(node): State<Arc<Node>>,
    Json(req): Json<NodeRequest>,
) -> Result<Json<ChangeReply>, AdminError> {
    leaving_leader(&node, req.id, "/admin/v1/remove", &req, || {
        membership::remove(&node, req.clone())
    })
    .await
}

async fn replace(
    State(node): State<Arc<Node>>,
    Json(req): Json<ReplaceRequest>,
) -> Result<Json<ChangeReply>, AdminError> {
    leaving_leader(&node, req.old, "/admin/v1/replace", &req, || {
        membership::replace(&node, req.clone())
    })
    .await
}

async fn transfer_leader(
    State(node): State<Arc<Node>>,
    Json(req): Json<TransferRequest>,
) -> Result<Json<ChangeReply>, AdminError> {
    on_leader(&node, "/admin/v1/transfer-leader", &req, || {
        membership::transfer_leader(&node, req.to)
    })
    .await
}

/// Not proxied: it runs on the witness, when no leader exists.
async fn witness_handover(
    State(node): State<Arc<Node>>,
    Json(req): Json<handover::HandoverRequest>,
) -> Result<Json<ChangeReply>, AdminError> {
    handover::run(&node, req)
        .await
        .map(Json)
        .map_err(AdminError::from)
}

/// Not proxied: it drains the node it is sent to. The drain runs in its
/// own task, so a client that hangs up cannot stop it half-way.
async fn drain(
    State(node): State<Arc<Node>>,
    State(duties): State<Duties>,
) -> Result<Json<crate::drain::DrainReport>, AdminError> {
    tokio::spawn(async move { crate::drain::drain(&node, &duties.drain).await })
        .await
        .map(Json)
        .map_err(|e| AdminError::Raft(format!("drain task: {e}")))
}

async fn snapshot(State(node): State<Arc<Node>>) -> Result<Json<ChangeReply>, AdminError> {
    let applied = node.raft_metrics().last_applied.map_or(0, |l| l.index);
    node.raft()
        .trigger()
        .snapshot()
        .await
        .map_err(|e| AdminError::Raft(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let snap = node.raft_metrics().snapshot.map_or(0, |l| l.index);
        if snap >= applied {
            return Ok(Json(ChangeReply {
                message: format!("snapshot built at index {snap}"),
                log_index: Some(snap),
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(AdminError::Raft(
        "snapshot did not complete within 30 s".into(),
    ))
}
