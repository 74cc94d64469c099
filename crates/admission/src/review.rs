//! AdmissionReview in, AdmissionReview out: the webhook's work without the HTTP around it.
//!
//! The response is written in the request's own version (`admission.k8s.io/v1` or `v1beta1`),
//! with `apiVersion`, `kind` and `response.uid` set, which a v1 API server requires. A body that
//! is not an AdmissionReview is an error, never an answer: the caller turns it into HTTP 400, so
//! a malformed request can never be allowed.

use kube_core::DynamicObject;
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube_core::response::StatusSummary;

use crate::policy::{Decision, Policy, Subject};

/// The AdmissionReview versions the webhook answers.
pub const REVIEW_VERSIONS: [&str; 2] = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

/// Why a request body is not a usable AdmissionReview (answered with HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// Not JSON, or not shaped like an AdmissionReview.
    #[error("the body is not an AdmissionReview: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON is UTF-8 (RFC 8259); a body that is not cannot be an API server's request, even
    /// where the bad bytes sit in a field the policy never reads.
    #[error("the body is not UTF-8 at byte {0}: send the AdmissionReview as UTF-8 JSON")]
    Utf8(usize),
    /// An apiVersion or kind this webhook does not speak.
    #[error(
        "unsupported AdmissionReview type {api_version:?} {kind:?}: send kind AdmissionReview, apiVersion admission.k8s.io/v1 or admission.k8s.io/v1beta1"
    )]
    Version {
        /// The apiVersion received.
        api_version: String,
        /// The kind received.
        kind: String,
    },
    /// An AdmissionReview without a request.
    #[error("the AdmissionReview has no request")]
    NoRequest,
    /// A request without a uid cannot be answered.
    #[error("the AdmissionReview request has no uid")]
    NoUid,
}

/// The webhook's answer to one AdmissionReview.
#[derive(Debug, Clone)]
pub struct Reviewed {
    /// Whether the request was allowed.
    pub allowed: bool,
    /// The denial message, when denied.
    pub message: Option<String>,
    /// The response AdmissionReview, serialised as JSON.
    pub body: Vec<u8>,
}

/// Reviews one AdmissionReview (the raw HTTP body) under `policy`.
pub fn review(policy: &Policy, body: &[u8]) -> Result<Reviewed, ReviewError> {
    let body = std::str::from_utf8(body).map_err(|e| ReviewError::Utf8(e.valid_up_to()))?;
    let review: AdmissionReview<DynamicObject> = serde_json::from_str(body)?;
    if review.types.kind != "AdmissionReview"
        || !REVIEW_VERSIONS.contains(&review.types.api_version.as_str())
    {
        return Err(ReviewError::Version {
            api_version: review.types.api_version,
            kind: review.types.kind,
        });
    }
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| ReviewError::NoRequest)?;
    if request.uid.is_empty() {
        return Err(ReviewError::NoUid);
    }
    let decision = decide(policy, &request);
    let mut response = AdmissionResponse::from(&request);
    let (allowed, message) = match decision {
        Decision::Allowed => (true, None),
        Decision::Denied { message, .. } => {
            response = response.deny(&message);
            response.result.status = Some(StatusSummary::Failure);
            response.result.code = 403;
            response.result.reason = "Forbidden".to_owned();
            (false, Some(message))
        }
    };
    let body = serde_json::to_vec(&response.into_review())?;
    Ok(Reviewed {
        allowed,
        message,
        body,
    })
}

fn decide(policy: &Policy, request: &AdmissionRequest<DynamicObject>) -> Decision {
    let null = serde_json::Value::Null;
    let (name, object) = match &request.object {
        Some(object) => (
            object
                .metadata
                .name
                .as_deref()
                .or(object.metadata.generate_name.as_deref())
                .unwrap_or(""),
            &object.data,
        ),
        None => (request.name.as_str(), &null),
    };
    let operation = match request.operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    };
    policy.decide(&Subject {
        group: &request.kind.group,
        kind: &request.kind.kind,
        sub_resource: request.sub_resource.as_deref(),
        operation,
        name,
        object,
    })
}
