//! The OpenAPI 3.1 document of API.md, generated from the handlers' `#[utoipa::path]` attributes
//! and the wire types' `ToSchema` derives, served at `GET /api/openapi.json`. Limits in the
//! schemas are the validators' own (`domain::values`), so a request the document allows is one
//! the server accepts, and the reverse: schemathesis (`scripts/fuzz.sh`) checks both.
//!
//! The error responses every operation shares are added by [`CommonResponses`] rather than
//! repeated on each handler: 400, 404, 500 and 503 everywhere; 401 and 403 wherever a token is
//! needed; 413 wherever there is a body; 422 wherever an `Idempotency-Key` is accepted.

use actix_web::HttpResponse;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::schemas::{ErrorEnvelope, IDEMPOTENCY_KEY};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "RideLock",
        description = "Booking coordination for ride-hailing: one writer per booking, no driver booked twice. See API.md.",
    ),
    paths(
        super::riders::create,
        super::riders::get,
        super::drivers::list,
        super::drivers::create,
        super::drivers::nearby,
        super::drivers::get,
        super::drivers::update_location,
        super::drivers::update_status,
        super::bookings::create,
        super::bookings::get,
        super::bookings::events,
        super::bookings::list_for_user,
        super::streams::booking,
        super::streams::user,
        super::streams::cluster,
        super::booking_actions::assign,
        super::booking_actions::accept,
        super::booking_actions::cancel,
        super::booking_actions::complete,
        super::health::lock_stats,
        super::health::cluster_nodes,
        super::health::health,
        super::health::livez,
        super::dashboard::page,
        super::health::readyz,
        super::metrics::render,
        document,
    ),
    components(schemas(ErrorEnvelope)),
    modifiers(&CommonResponses),
)]
pub(crate) struct ApiDoc;

/// `GET /api/openapi.json`.
#[utoipa::path(
    get,
    operation_id = "openapi_document",
    path = "/api/openapi.json",
    tag = "meta",
    responses((status = 200, description = "This document", content_type = "application/json")),
)]
pub async fn document() -> HttpResponse {
    // Built once per process: the document never changes while it runs, and anyone may ask.
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body =
        DOCUMENT.get_or_init(|| serde_json::to_string(&ApiDoc::openapi()).unwrap_or_default());
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body.as_str())
}

/// The document as `ridelock openapi` prints it and `docs/openapi.json` holds it.
pub fn pretty_document() -> serde_json::Result<String> {
    serde_json::to_string_pretty(&ApiDoc::openapi())
}

struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT whose `sub` is rider:<id>, driver:<id> or ops:<name> (docs/auth.md, Authentication)",
                    ))
                    .build(),
            ),
        );
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.put,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                add_common(operation);
            }
        }
    }
}

fn add_common(operation: &mut Operation) {
    let secured = operation
        .security
        .as_ref()
        .is_some_and(|list| !list.is_empty());
    let keyed = operation.parameters.iter().flatten().any(|p| {
        matches!(p, RefOr::T(p) if p.name == IDEMPOTENCY_KEY && matches!(p.parameter_in, ParameterIn::Header))
    });
    let mut common = vec![
        ("400", "Invalid input: `data.field` names the field"),
        ("404", "Unknown id"),
        (
            "429",
            "Over the caller's rate limit (`rate_limit.*`); nothing was done; retry after `Retry-After` seconds",
        ),
        ("500", "A bug; never on purpose"),
        (
            "503",
            "PostgreSQL, Redis, the booking's lease or the request's deadline ran out; retry after `Retry-After` seconds",
        ),
    ];
    if secured {
        common.push(("401", "Missing, malformed, expired or wrongly signed token"));
        common.push((
            "403",
            "The token's subject may not do this (docs/auth.md, Authorization)",
        ));
    }
    if operation.request_body.is_some() {
        common.push(("413", "Body larger than 64 KiB"));
    }
    if keyed {
        common.push((
            "422",
            "Idempotency-Key already used for a different request",
        ));
    }
    for (status, description) in common {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| error_response(description));
    }
}

fn error_response(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "ErrorEnvelope",
                )))),
            )
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::values;

    fn document() -> serde_json::Value {
        serde_json::to_value(ApiDoc::openapi()).unwrap_or_default()
    }

    #[test]
    fn the_committed_document_is_the_one_the_server_serves() {
        let committed = include_str!("../../docs/openapi.json");
        let served = pretty_document().unwrap_or_default();
        assert!(
            committed.trim_end() == served,
            "docs/openapi.json is out of date: run `cargo run -- openapi > docs/openapi.json`"
        );
    }

    #[test]
    fn every_operation_documents_its_errors_and_secured_ones_their_token() {
        let doc = document();
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        assert!(paths.len() >= 17, "{}", paths.len());
        for (path, item) in paths {
            for (method, op) in item.as_object().cloned().unwrap_or_default() {
                let responses = &op["responses"];
                for status in ["400", "404", "429", "500", "503"] {
                    assert!(
                        responses.get(status).is_some(),
                        "{method} {path} lacks {status}"
                    );
                }
                let public = matches!(
                    path.as_str(),
                    "/api/health" | "/api/openapi.json" | "/livez" | "/readyz" | "/dashboard"
                );
                assert_eq!(op.get("security").is_none(), public, "{method} {path}");
                if !public {
                    assert!(responses.get("401").is_some(), "{method} {path} lacks 401");
                }
            }
        }
    }

    /// The links (create -> assign -> accept -> complete, and cancel) name operations by id in
    /// strings: each must name a real operation, only its parameters, and only properties of its
    /// request body, or a rename would leave the fuzzer's stateful phase following nothing.
    #[test]
    fn every_link_leads_to_a_real_operation_with_real_inputs() {
        let doc = document();
        let mut operations = std::collections::HashMap::new();
        let mut link_source = std::collections::HashMap::new();
        let mut links = Vec::new();
        for item in doc["paths"]
            .as_object()
            .cloned()
            .unwrap_or_default()
            .values()
        {
            for op in item.as_object().cloned().unwrap_or_default().into_values() {
                if let Some(id) = op["operationId"].as_str() {
                    operations.insert(id.to_owned(), op.clone());
                }
                for response in op["responses"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
                    .values()
                {
                    for (name, link) in response["links"].as_object().cloned().unwrap_or_default() {
                        let schema = &response["content"]["application/json"]["schema"];
                        link_source.insert(name.clone(), schema.clone());
                        links.push((name, link));
                    }
                }
            }
        }
        assert!(links.len() >= 4, "{links:?}");
        for (name, link) in links {
            let target = link["operationId"].as_str().unwrap_or_default();
            let op = &operations[target];
            let params: Vec<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["name"].as_str())
                .collect();
            for param in link["parameters"].as_object().into_iter().flatten() {
                assert!(params.contains(&param.0.as_str()), "{name}: {param:?}");
            }
            for expression in link["parameters"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|e| e.1)
                .chain(
                    link["requestBody"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|e| e.1),
                )
                .filter_map(|v| v.as_str())
                .filter(|v| v.starts_with('$'))
            {
                let pointer = expression
                    .strip_prefix("$response.body#/")
                    .unwrap_or_else(|| panic!("{name}: {expression} is not a body pointer"));
                assert!(
                    resolves(&doc, &link_source[&name], pointer),
                    "{name}: {expression} names nothing in the response"
                );
            }
            let schema_ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .unwrap_or_default();
            let schema = &doc["components"]["schemas"][schema_ref.rsplit('/').next().unwrap_or("")];
            for key in link["requestBody"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|e| e.0)
            {
                assert!(schema["properties"].get(key).is_some(), "{name}: {key}");
            }
        }
    }

    /// Whether the JSON pointer `pointer` (`data/booking/id`) names a property of `schema`,
    /// following `$ref`s and looking into every branch of `allOf`/`oneOf`/`anyOf`.
    fn resolves(doc: &serde_json::Value, schema: &serde_json::Value, pointer: &str) -> bool {
        if let Some(reference) = schema["$ref"].as_str() {
            let name = reference.rsplit('/').next().unwrap_or_default();
            return resolves(doc, &doc["components"]["schemas"][name], pointer);
        }
        let branches = ["allOf", "oneOf", "anyOf"]
            .iter()
            .filter_map(|k| schema[*k].as_array())
            .flatten();
        if branches
            .clone()
            .any(|branch| resolves(doc, branch, pointer))
        {
            return true;
        }
        match pointer.split_once('/') {
            _ if pointer.is_empty() => true,
            Some((head, rest)) => schema["properties"]
                .get(head)
                .is_some_and(|inner| resolves(doc, inner, rest)),
            None => schema["properties"].get(pointer).is_some(),
        }
    }

    /// Every `pattern` string anywhere in `value`.
    fn patterns(value: &serde_json::Value, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    match (key.as_str(), inner) {
                        ("pattern", serde_json::Value::String(p)) => found.push(p.clone()),
                        _ => patterns(inner, found),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| patterns(i, found)),
            _ => {}
        }
    }

    /// The attributes repeat the validators' patterns as literals (utoipa takes no constants
    /// there): every copy must be one of them, or one of the few enumerations.
    #[test]
    fn the_documented_patterns_are_the_validators() {
        let mut found = Vec::new();
        patterns(&document(), &mut found);
        let validators = [
            values::TEXT_PATTERN,
            values::PHONE_PATTERN,
            values::EMAIL_PATTERN,
            values::VEHICLE_TYPE_PATTERN,
        ];
        let others = [
            // A cancel reason: like TEXT_PATTERN, but blank is allowed (it means none).
            r"^[^\u0000-\u001f\u007f-\u009f]*$",
            "^[!-~]{1,255}$",
            "^(online|offline)$",
            "^(rider|driver)$",
            "^(pending|assigned|accepted|completed|cancelled)$",
            "^(jwt|off)$",
            "^(up|down)$",
            "^(redis|postgres)$",
            // An event stream's event: its type (the cluster stream's too) and its id.
            "^booking$",
            "^(booking|lease|backend|node)$",
            "^[0-9]+$",
        ];
        for pattern in &found {
            assert!(
                validators.contains(&pattern.as_str()) || others.contains(&pattern.as_str()),
                "{pattern} is neither a validator's pattern nor a known enumeration"
            );
        }
        for pattern in validators {
            assert!(
                found.iter().any(|p| p == pattern),
                "{pattern} is not in the document"
            );
        }
    }
}
