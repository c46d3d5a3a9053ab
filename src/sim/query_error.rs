//! A refused query: what every `/users` parser (the query, `$filter`, delta) answers with.

use hyper::StatusCode;

/// A refusal: status, Graph error code, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

pub(crate) fn bad(message: impl Into<String>) -> QueryError {
    QueryError {
        status: StatusCode::BAD_REQUEST,
        code: "Request_BadRequest",
        message: message.into(),
    }
}
