//! Response helpers: JSON bodies and `ResourceProviderError` bodies on every 4xx/5xx.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use wap_types::ResourceProviderError;

use super::ResponseBody;

/// `application/json; charset=utf-8`.
pub(crate) const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// A body from bytes.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// A response with no body.
pub(crate) fn empty(status: StatusCode) -> Response<ResponseBody> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// A JSON response.
pub(crate) fn json_text(status: StatusCode, text: impl Into<Bytes>) -> Response<ResponseBody> {
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
    r
}

/// A JSON response of a serializable value (500 if it cannot be serialized).
pub(crate) fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<ResponseBody> {
    match serde_json::to_vec(value) {
        Ok(v) => json_text(status, v),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize a response body");
            error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "The response could not be serialized.")
        }
    }
}

/// A `ResourceProviderError` response.
pub(crate) fn rp_error(status: StatusCode, body: &ResourceProviderError) -> Response<ResponseBody> {
    match serde_json::to_vec(body) {
        Ok(v) => json_text(status, v),
        Err(_) => json_text(status, r#"{"Code":"InternalError","Message":"The error could not be serialized."}"#),
    }
}

/// A `ResourceProviderError` response with a code and message.
pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response<ResponseBody> {
    rp_error(status, &ResourceProviderError::new(code, message))
}

/// Marks the connection to be closed after this response (the request body was not read to its end).
pub(crate) fn closing(mut r: Response<ResponseBody>) -> Response<ResponseBody> {
    r.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// The error code for a status the server answers itself.
pub(crate) fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        408 => "RequestTimeout",
        409 => "Conflict",
        413 => "PayloadTooLarge",
        415 => "UnsupportedMediaType",
        503 => "ServiceUnavailable",
        s if s >= 500 => "InternalError",
        _ => "Error",
    }
}
