//! The HTTP ceiling for `make bench`: actix-web answering a fixed JSON body, no state, no I/O.
//! Whatever RideLock does per request costs on top of this on the same machine.

use actix_web::{web, App, HttpResponse, HttpServer};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3900);
    HttpServer::new(|| {
        App::new().route(
            "/",
            web::get().to(|| async {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(r#"{"success":true,"message":"ok"}"#)
            }),
        )
    })
    .bind(("127.0.0.1", port))?
    .run()
    .await
}
