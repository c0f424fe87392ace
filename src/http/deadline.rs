//! Every request has a deadline: `server.request_timeout_ms` plus [`GRACE`]. The paths that wait
//! on something (an actor's reply, a lease, a forwarded call, a pooled connection) already give
//! up within `request_timeout_ms` and answer for themselves; this is the backstop for whatever
//! hangs without failing (a PostgreSQL that stopped answering without closing its connections).
//! The handler is dropped and the client gets 503 `deadline_exceeded` with `Retry-After`. As with
//! any 503 on a mutation, the outcome is unknown: a booking action already handed to its actor,
//! or a statement already sent, may still commit. A transaction cut off in the middle is never
//! committed: its connection goes back to the pool still inside it, the pool discards it at its
//! next checkout, and PostgreSQL ends it (releasing its locks) after
//! `database.idle_transaction_timeout_ms` at the latest. Retrying with the same
//! `Idempotency-Key` is safe.

use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error, ResponseError};

use crate::error::ApiError;

/// Time past `request_timeout_ms` left to the inner paths to answer on their own.
pub const GRACE: Duration = Duration::from_secs(1);

/// How long a request may run, registered as app data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestDeadline(pub Duration);

impl RequestDeadline {
    pub fn after(request_timeout: Duration) -> Self {
        Self(request_timeout + GRACE)
    }
}

/// Middleware: answers 503 for a request still running at its deadline.
pub async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(within) = req
        .app_data::<web::Data<RequestDeadline>>()
        .map(|deadline| deadline.0)
    else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let request = req.request().clone();
    match tokio::time::timeout(within, next.call(req)).await {
        Ok(answer) => answer.map(ServiceResponse::map_into_left_body),
        Err(_) => {
            log::warn!(
                "request abandoned at its deadline method={} path={} after_ms={}",
                request.method(),
                request.path(),
                within.as_millis()
            );
            let refusal = ApiError::DeadlineExceeded.error_response();
            Ok(ServiceResponse::new(request, refusal).map_into_right_body())
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::{middleware::from_fn, test, App, HttpResponse};

    use super::*;

    #[actix_web::test]
    async fn a_request_still_running_at_its_deadline_gets_503_and_the_rest_are_untouched() {
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(RequestDeadline(Duration::from_millis(100))))
                .service(
                    web::resource("/slow/{ms}")
                        .route(web::get().to(|ms: web::Path<u64>| async move {
                            tokio::time::sleep(Duration::from_millis(*ms)).await;
                            HttpResponse::Ok().finish()
                        }))
                        .wrap(from_fn(limit)),
                ),
        )
        .await;

        let quick =
            test::call_service(&app, test::TestRequest::get().uri("/slow/1").to_request()).await;
        let hung = test::call_service(
            &app,
            test::TestRequest::get().uri("/slow/5000").to_request(),
        )
        .await;

        assert_eq!(quick.status(), 200);
        assert_eq!(hung.status(), 503);
        assert_eq!(
            hung.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
        let body: serde_json::Value = test::read_body_json(hung).await;
        assert_eq!(body["error"], "deadline_exceeded");
    }
}
