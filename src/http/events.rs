//! Status streams: `GET /v1/documents/{id}/events` sends a document's status as server-sent
//! events until no version of it is being processed. Streams are driven by the database's
//! `LISTEN/NOTIFY` (a trigger notifies `kb_document_status` with the document id whenever its
//! status, pending version or error changes; `migrations/0007_status_notify.sql`), through one
//! listening connection per server: an idle stream costs no query. Streams are capped per
//! user and in total, and each lives at most `Limits::status_stream_lifetime`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, Weak};

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{OnceCell, broadcast, watch};
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, Path};
use crate::store::documents::{self, StatusView};

/// The channel the status trigger notifies.
const CHANNEL: &str = "kb_document_status";

/// Notices queued for a slow stream before it must re-read instead.
const BACKLOG: usize = 1024;

/// What the listener tells the streams.
#[derive(Debug, Clone, Copy)]
enum Notice {
    /// This document's status may have changed.
    Changed(Uuid),
    /// Notifications may have been lost (the listening connection was re-established):
    /// every stream re-reads its document.
    Resync,
}

/// The server's status streams: the listening connection (started by the first stream) and
/// the count of open streams, per user and in total.
pub struct StatusHub {
    notices: broadcast::Sender<Notice>,
    listening: OnceCell<()>,
    open: Mutex<OpenStreams>,
    /// Turns true when the hub is dropped, to end its listener task.
    closed: watch::Sender<bool>,
}

#[derive(Default)]
struct OpenStreams {
    total: usize,
    by_user: HashMap<Uuid, usize>,
}

impl Default for StatusHub {
    fn default() -> StatusHub {
        StatusHub {
            notices: broadcast::channel(BACKLOG).0,
            listening: OnceCell::new(),
            open: Mutex::new(OpenStreams::default()),
            closed: watch::Sender::new(false),
        }
    }
}

impl Drop for StatusHub {
    fn drop(&mut self) {
        self.closed.send_replace(true);
    }
}

impl std::fmt::Debug for StatusHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatusHub(..)")
    }
}

/// One open stream's place under the caps; freed when the stream ends.
struct Slot {
    hub: Weak<StatusHub>,
    user: Uuid,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            let mut open = hub.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            open.total = open.total.saturating_sub(1);
            if let Some(n) = open.by_user.get_mut(&self.user) {
                *n -= 1;
                if *n == 0 {
                    open.by_user.remove(&self.user);
                }
            }
        }
    }
}

impl StatusHub {
    /// Takes a place for one more stream of `user`, or says which cap is reached.
    fn open_slot(self: &Arc<StatusHub>, user: Uuid, max_total: usize, max_per_user: usize) -> Result<Slot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mine = open.by_user.get(&user).copied().unwrap_or(0);
        if mine >= max_per_user {
            return Err(ApiError::TooManyStreams(format!(
                "you have {mine} status streams open, the most one user may; close one or poll GET /v1/documents/{{id}}"
            )));
        }
        if open.total >= max_total {
            return Err(ApiError::TooManyStreams(format!(
                "the server has {} status streams open, its limit; retry shortly or poll GET /v1/documents/{{id}}",
                open.total
            )));
        }
        open.total += 1;
        *open.by_user.entry(user).or_insert(0) += 1;
        Ok(Slot { hub: Arc::downgrade(self), user })
    }

    /// A receiver of notices, once the listening connection is up: a change committed after
    /// this returns is never missed.
    async fn subscribe(self: &Arc<StatusHub>, pool: &PgPool) -> Result<broadcast::Receiver<Notice>, sqlx::Error> {
        let receiver = self.notices.subscribe();
        self.listening
            .get_or_try_init(|| async {
                let mut listener = PgListener::connect_with(pool).await?;
                listener.listen(CHANNEL).await?;
                tokio::spawn(listen(listener, self.notices.clone(), self.closed.subscribe()));
                Ok::<_, sqlx::Error>(())
            })
            .await?;
        Ok(receiver)
    }
}

/// Forwards the database's notifications to the streams until the hub is dropped.
async fn listen(mut listener: PgListener, notices: broadcast::Sender<Notice>, mut closed: watch::Receiver<bool>) {
    loop {
        let received = tokio::select! {
            received = listener.try_recv() => received,
            // The listener is dropped with this task, never used after a cancelled receive.
            _ = closed.wait_for(|closed| *closed) => return,
        };
        match received {
            Ok(Some(notification)) => match notification.payload().parse() {
                Ok(id) => {
                    let _ = notices.send(Notice::Changed(id));
                }
                Err(_) => tracing::warn!(payload = notification.payload(), "status notification without a document id"),
            },
            // The connection was lost and is re-established: what was notified meanwhile is gone.
            Ok(None) => {
                let _ = notices.send(Notice::Resync);
            }
            Err(e) => {
                tracing::warn!(error = %e, "status listener failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let _ = notices.send(Notice::Resync);
            }
        }
    }
}

/// A document's status as the caller sees it (None: gone or not theirs).
async fn status_of(pool: &PgPool, caller: Caller, id: Uuid) -> Result<Option<StatusView>, ApiError> {
    let mut tx = caller.begin(pool).await?;
    let status = documents::document_status(&mut tx, id).await?;
    tx.commit().await?;
    Ok(status)
}

fn status_event(id: Uuid, view: &StatusView) -> Event {
    let data = serde_json::json!({
        "id": id, "status": view.status, "processing": view.processing, "processing_error": view.processing_error
    });
    Event::default().event("status").data(data.to_string())
}

/// Why a stream ended before its document was done.
fn end_event(reason: &str) -> Event {
    Event::default().event("end").data(serde_json::json!({ "reason": reason }).to_string())
}

struct Watch {
    pool: PgPool,
    caller: Caller,
    id: Uuid,
    notices: broadcast::Receiver<Notice>,
    stopping: watch::Receiver<bool>,
    deadline: tokio::time::Instant,
    first: Option<StatusView>,
    last: Option<StatusView>,
    done: bool,
    _slot: Slot,
}

impl Watch {
    /// Waits for the next change of the document; None when the stream should end (with the
    /// event that says why, if any).
    async fn next_change(&mut self) -> Result<Option<StatusView>, Option<Event>> {
        loop {
            let notice = tokio::select! {
                notice = self.notices.recv() => notice,
                _ = tokio::time::sleep_until(self.deadline) => return Err(Some(end_event("max_lifetime"))),
                // The server is stopping: end the stream; the client reconnects elsewhere.
                _ = self.stopping.wait_for(|stop| *stop) => return Err(Some(end_event("shutdown"))),
            };
            match notice {
                Ok(Notice::Changed(id)) if id != self.id => continue,
                Ok(Notice::Changed(_) | Notice::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Err(Some(end_event("shutdown"))),
            }
            return match status_of(&self.pool, self.caller, self.id).await {
                Ok(view) => Ok(view),
                Err(e) => {
                    tracing::warn!(error = %e, document = %self.id, "status read failed");
                    Err(Some(Event::default().event("error").data(r#"{"code":"internal"}"#)))
                }
            };
        }
    }
}

/// `GET /v1/documents/{id}/events`: `status` events (`{"id","status","processing",
/// "processing_error"}`) on every change until no version is being processed; `deleted` if
/// the document goes; `end` (`{"reason": "max_lifetime" | "shutdown"}`) if the stream ends first.
#[utoipa::path(
    get,
    path = "/v1/documents/{id}/events",
    operation_id = "document_events",
    tag = "documents",
    params(("id" = Uuid, Path, description = "The document's id")),
    responses(
        (status = 200, description = "The status stream; each event is one `StatusEvent`",
            content_type = "text/event-stream", body = super::openapi::StatusEvent),
        (status = 400, description = "The id is not a UUID", body = super::openapi::ErrorBody),
        (status = 404, description = "No such document visible to the caller", body = super::openapi::ErrorBody),
        (status = 429, description = "Too many status streams are open (`too_many_streams`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn document_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let limits = &state.limits;
    let slot =
        state.status_hub.open_slot(caller.user, limits.max_status_streams, limits.max_status_streams_per_user)?;
    let notices = state.status_hub.subscribe(&state.pool).await?;
    let first = status_of(&state.pool, caller, id).await?.ok_or(ApiError::NotFound("document"))?;
    let watch = Watch {
        pool: state.pool.clone(),
        caller,
        id,
        notices,
        stopping: state.stopping.subscribe(),
        deadline: tokio::time::Instant::now() + limits.status_stream_lifetime,
        first: Some(first),
        last: None,
        done: false,
        _slot: slot,
    };
    let stream = futures::stream::unfold(watch, |mut w| async move {
        if w.done {
            return None;
        }
        loop {
            let view = match w.first.take() {
                Some(first) => first,
                None => match w.next_change().await {
                    Ok(Some(view)) => view,
                    Ok(None) => {
                        w.done = true;
                        let event =
                            Event::default().event("deleted").data(serde_json::json!({ "id": w.id }).to_string());
                        return Some((Ok(event), w));
                    }
                    Err(end) => {
                        w.done = true;
                        return end.map(|event| (Ok(event), w));
                    }
                },
            };
            if w.last.as_ref() == Some(&view) {
                continue;
            }
            // Ends once no version is being processed: ready with it, or failed.
            w.done = !view.processing;
            let event = status_event(w.id, &view);
            w.last = Some(view);
            return Some((Ok(event), w));
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
