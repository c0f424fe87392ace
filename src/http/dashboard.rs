//! `GET /dashboard`: the cluster's live view for operators, one self-contained page built into
//! the binary (`dashboard.html`: markup, style and script inline, nothing fetched from elsewhere,
//! so it works offline). The page holds no data: it reads the ops stream
//! (`/api/cluster/stream`) with the operator token it asks for, so it is served to anyone.

use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::HttpResponse;

const PAGE: &str = include_str!("dashboard.html");

/// What the page may do: run its own inline script and style, and talk to this node only.
const POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                      connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The cluster dashboard: nodes, lease moves and takeovers, transitions, bookings by status and
/// contention, live from the ops stream (an operator token is asked for when auth is on).
#[utoipa::path(
    get,
    operation_id = "dashboard",
    path = "/dashboard",
    tag = "meta",
    responses((status = 200, description = "The dashboard page", content_type = "text/html", body = String)),
)]
pub(crate) async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(PAGE)
}
