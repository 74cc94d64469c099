//! AdmissionReview in, AdmissionReview out: the webhook's work without the HTTP around it.
//!
//! The response is written in the request's own version (`admission.k8s.io/v1` or `v1beta1`),
//! with `apiVersion`, `kind` and `response.uid` set, which a v1 API server requires. A body that
//! is not an AdmissionReview is an error, never an answer: the caller turns it into HTTP 400, so
//! a malformed request can never be allowed.
//!
//! The request is read into borrowed structs that hold only what the policy looks at; the rest
//! of the body is skipped without being stored. The object keeps, of all its fields, only those
//! the policy reads (`SPEC` below), so the policy sees the same JSON it would see in the whole
//! object, and decides the same. The fields an AdmissionReview must have stay required, so a body
//! that is not one is still an error.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
    let MapOnly(review) = serde_json::from_str::<MapOnly<Envelope<'_>>>(body)?;
    if review.kind.0 != "AdmissionReview" || !REVIEW_VERSIONS.contains(&&*review.api_version.0) {
        return Err(ReviewError::Version {
            api_version: review.api_version.0.into_owned(),
            kind: review.kind.0.into_owned(),
        });
    }
    let mut request = review.request.ok_or(ReviewError::NoRequest)?;
    if request.uid.0.is_empty() {
        return Err(ReviewError::NoUid);
    }
    let (allowed, message) = match decide(policy, &mut request) {
        Decision::Allowed => (true, None),
        Decision::Denied { message, .. } => (false, Some(message)),
    };
    let answer = ReviewOut {
        api_version: &review.api_version.0,
        kind: "AdmissionReview",
        response: ResponseOut {
            uid: &request.uid.0,
            allowed,
            status: StatusOut {
                status: message.as_ref().map(|_| "Failure"),
                code: message.as_ref().map(|_| 403),
                message: message.as_deref(),
                reason: message.as_ref().map(|_| "Forbidden"),
            },
        },
    };
    // The answer is a few hundred bytes: one allocation, never a second.
    let mut body =
        Vec::with_capacity(256 + request.uid.0.len() + message.as_ref().map_or(0, String::len));
    serde_json::to_writer(&mut body, &answer)?;
    Ok(Reviewed {
        allowed,
        message,
        body,
    })
}

fn decide(policy: &Policy, request: &mut Request<'_>) -> Decision {
    let null = Value::Null;
    let object;
    let (name, object) = match &mut request.object {
        Some(MapOnly(found)) => {
            let meta = found.metadata.as_ref().map(|MapOnly(m)| m);
            let name = meta
                .and_then(|m| m.name.as_ref().or(m.generate_name.as_ref()))
                .map_or("", |n| &*n.0);
            // The policy reads the spec by its path in the object, as the CEL does.
            let mut fields = Map::new();
            if let Some(Kept(spec)) = found.spec.take() {
                fields.insert("spec".to_owned(), spec);
            }
            object = Value::Object(fields);
            (name, &object)
        }
        None => (&*request.name.0, &null),
    };
    policy.decide(&Subject {
        group: &request.kind.group.0,
        kind: &request.kind.kind.0,
        sub_resource: request.sub_resource.as_ref().map(|s| &*s.0),
        operation: request.operation.as_str(),
        name,
        object,
    })
}

/// An AdmissionReview as it arrives: `response`, if any, is skipped.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(borrow)]
    api_version: Text<'a>,
    #[serde(borrow)]
    kind: Text<'a>,
    #[serde(borrow, default)]
    request: Option<Request<'a>>,
}

/// The request, with the fields every AdmissionRequest has kept required even where the
/// policy does not read them (`resource`, `userInfo`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    #[serde(borrow)]
    uid: Text<'a>,
    #[serde(borrow)]
    kind: Kind<'a>,
    #[serde(rename = "resource")]
    _resource: IgnoredAny,
    #[serde(borrow, default)]
    sub_resource: Option<Text<'a>>,
    #[serde(borrow, default)]
    name: Text<'a>,
    operation: Operation,
    #[serde(rename = "userInfo")]
    _user_info: IgnoredAny,
    #[serde(borrow, default)]
    object: Option<MapOnly<Object<'a>>>,
}

/// The group, version and kind of the object (all three required, as in the API).
#[derive(Deserialize)]
struct Kind<'a> {
    #[serde(borrow)]
    group: Text<'a>,
    #[serde(rename = "version")]
    _version: IgnoredAny,
    #[serde(borrow)]
    kind: Text<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    fn as_str(&self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
        }
    }
}

/// The object under review: its names and the fields of its spec the policy reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object<'a> {
    #[serde(borrow, default)]
    metadata: Option<MapOnly<Metadata<'a>>>,
    #[serde(default)]
    spec: Option<Kept>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata<'a> {
    #[serde(borrow, default)]
    name: Option<Text<'a>>,
    #[serde(borrow, default)]
    generate_name: Option<Text<'a>>,
}

/// A JSON string, borrowed from the body unless it has escapes.
#[derive(Default)]
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Strings;
        impl<'de> Visitor<'de> for Strings {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(Strings)
    }
}

/// A struct read only from a JSON object. Derived structs also take a JSON array of their
/// fields in order; an AdmissionReview and an object are never arrays.
struct MapOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Maps<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Maps<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(Maps(PhantomData)).map(MapOnly)
    }
}

/// Which parts of a JSON value to keep.
enum Keep {
    /// The whole value.
    All,
    /// Of an object, the named fields, each with what to keep of it; of an array, that for each
    /// element; any other value whole.
    Fields(&'static [(&'static str, Keep)]),
    /// The fields of both lists.
    Both(
        &'static [(&'static str, Keep)],
        &'static [(&'static str, Keep)],
    ),
}

impl Keep {
    fn field(&self, name: &str) -> Option<&Keep> {
        let (a, b): (&[_], &[_]) = match self {
            Self::All => return None,
            Self::Fields(a) => (a, &[]),
            Self::Both(a, b) => (a, b),
        };
        a.iter()
            .chain(b)
            .find(|(field, _)| *field == name)
            .map(|(_, keep)| keep)
    }
}

/// Of a container, what [`Policy::decide`] reads.
const CONTAINER: Keep = Keep::Fields(&[
    ("name", Keep::All),
    ("image", Keep::All),
    ("command", Keep::All),
    (
        "securityContext",
        Keep::Fields(&[
            ("privileged", Keep::All),
            ("capabilities", Keep::Fields(&[("add", Keep::All)])),
            (
                "windowsOptions",
                Keep::Fields(&[("hostProcess", Keep::All)]),
            ),
        ]),
    ),
]);

/// Of a pod spec, what [`Policy::decide`] reads. Of a volume's `hostPath` only whether it is
/// there matters, so none of its fields is kept.
const POD_SPEC: &[(&str, Keep)] = &[
    ("serviceAccountName", Keep::All),
    ("serviceAccount", Keep::All),
    ("containers", CONTAINER),
    ("initContainers", CONTAINER),
    ("ephemeralContainers", CONTAINER),
    ("hostNetwork", Keep::All),
    ("hostPID", Keep::All),
    ("hostIPC", Keep::All),
    (
        "securityContext",
        Keep::Fields(&[(
            "windowsOptions",
            Keep::Fields(&[("hostProcess", Keep::All)]),
        )]),
    ),
    (
        "volumes",
        Keep::Fields(&[("name", Keep::All), ("hostPath", Keep::Fields(&[]))]),
    ),
];

/// Of an object's `spec`, what the policy reads for any kind it guards: the pod spec of a Pod,
/// the template of a workload, the job template of a CronJob (see
/// [`crate::policy::PodSpecPath`]). Which one applies depends on the kind, which a body may
/// send after the object, so all are kept; the policy reads only its own.
const SPEC: Keep = Keep::Both(
    POD_SPEC,
    &[
        (
            "template",
            Keep::Fields(&[("spec", Keep::Fields(POD_SPEC))]),
        ),
        (
            "jobTemplate",
            Keep::Fields(&[(
                "spec",
                Keep::Fields(&[(
                    "template",
                    Keep::Fields(&[("spec", Keep::Fields(POD_SPEC))]),
                )]),
            )]),
        ),
    ],
);

/// An object's `spec`, pruned to [`SPEC`].
struct Kept(Value);

impl<'de> Deserialize<'de> for Kept {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Pruned(&SPEC).deserialize(deserializer).map(Kept)
    }
}

/// Reads a value into what `Keep` says of it, skipping the rest unstored.
#[derive(Clone, Copy)]
struct Pruned<'k>(&'k Keep);

impl<'de> DeserializeSeed<'de> for Pruned<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self.0 {
            Keep::All => Value::deserialize(deserializer),
            _ => deserializer.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for Pruned<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            match self.0.field(&key) {
                Some(keep) => {
                    // A repeated field counts as its last value, as in serde_json's Value.
                    kept.insert(key.into_owned(), map.next_value_seed(Pruned(keep))?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(kept))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut kept = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(element) = seq.next_element_seed(self)? {
            kept.push(element);
        }
        Ok(Value::Array(kept))
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// The answer, written in the request's version.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    /// Always present (`{}` when allowed): readers such as kube's require it.
    status: StatusOut<'a>,
}

#[derive(Serialize)]
struct StatusOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}
