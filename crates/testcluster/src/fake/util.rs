//! Small pieces every part of the fake uses: errors as `Status`, times, random names, JSON paths.

use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::resources::Res;

/// An error answer of the API, sent as a `Status` object with this code and reason.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason` (NotFound, AlreadyExists, Conflict, Invalid, Forbidden, BadRequest, ...).
    pub reason: &'static str,
    /// `Status.message`.
    pub message: String,
    /// `Status.details`, when the server gives them.
    pub details: Option<Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.reason, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// The `Status` object sent to the client.
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }

    fn details(res: Res, name: &str) -> Value {
        json!({"name": name, "group": res.info().group, "kind": res.info().plural})
    }

    /// 404 `pods "x" not found`.
    pub fn not_found(res: Res, name: &str) -> Self {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("{} \"{name}\" not found", res.qualified()),
            details: Some(Self::details(res, name)),
        }
    }

    /// 409 `pods "x" already exists`.
    pub fn already_exists(res: Res, name: &str) -> Self {
        ApiError {
            code: 409,
            reason: "AlreadyExists",
            message: format!("{} \"{name}\" already exists", res.qualified()),
            details: Some(Self::details(res, name)),
        }
    }

    /// 409 Conflict on a stale resourceVersion or a failed precondition.
    pub fn conflict(res: Res, name: &str, why: &str) -> Self {
        ApiError {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                res.qualified()
            ),
            details: Some(Self::details(res, name)),
        }
    }

    /// 422 Invalid with one cause per field error.
    pub fn invalid(res: Res, name: &str, causes: Vec<FieldError>) -> Self {
        let text: Vec<String> = causes.iter().map(|c| c.to_string()).collect();
        let message = if text.len() == 1 {
            format!("{} \"{name}\" is invalid: {}", res.info().kind, text[0])
        } else {
            format!(
                "{} \"{name}\" is invalid: [{}]",
                res.info().kind,
                text.join(", ")
            )
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.kind.reason(), "message": c.message_part(), "field": c.field}))
            .collect();
        let mut details = Self::details(res, name);
        details["kind"] = json!(res.info().kind);
        details["causes"] = json!(causes);
        ApiError {
            code: 422,
            reason: "Invalid",
            message,
            details: Some(details),
        }
    }

    /// 403 Forbidden.
    pub fn forbidden(message: String) -> Self {
        ApiError {
            code: 403,
            reason: "Forbidden",
            message,
            details: None,
        }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            code: 400,
            reason: "BadRequest",
            message: message.into(),
            details: None,
        }
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        ApiError {
            code: 405,
            reason: "MethodNotAllowed",
            message: message.into(),
            details: None,
        }
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media(ct: &str) -> Self {
        ApiError {
            code: 415,
            reason: "UnsupportedMediaType",
            message: format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {ct:?})"
            ),
            details: None,
        }
    }

    /// 410 Expired, for a watch from a resourceVersion no longer kept.
    pub fn gone(rv: u64) -> Self {
        ApiError {
            code: 410,
            reason: "Expired",
            message: format!("too old resource version: {rv}"),
            details: None,
        }
    }
}

/// The kinds of field errors the API server reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// `Required value`
    Required,
    /// `Invalid value`
    Invalid,
    /// `Forbidden`
    Forbidden,
    /// `Unsupported value`
    NotSupported,
    /// `Duplicate value`
    Duplicate,
    /// `Not found`
    NotFound,
}

impl FieldErrorKind {
    fn reason(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::NotFound => "FieldValueNotFound",
        }
    }

    fn text(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::NotFound => "Not found",
        }
    }
}

/// One field error, printed as the API server prints them (`spec.x: Invalid value: "y": why`).
#[derive(Debug, Clone)]
pub struct FieldError {
    /// Kind of error.
    pub kind: FieldErrorKind,
    /// JSON path of the field (`spec.resources.requests.storage`).
    pub field: String,
    /// The bad value, shown for Invalid/NotSupported/Duplicate.
    pub value: Option<Value>,
    /// Explanation.
    pub detail: String,
}

impl FieldError {
    /// A field error of `kind` on `field`.
    pub fn new(kind: FieldErrorKind, field: &str, value: Option<Value>, detail: &str) -> Self {
        FieldError {
            kind,
            field: field.to_string(),
            value,
            detail: detail.to_string(),
        }
    }

    fn message_part(&self) -> String {
        let mut s = self.kind.text().to_string();
        if let Some(v) = &self.value
            && matches!(
                self.kind,
                FieldErrorKind::Invalid
                    | FieldErrorKind::NotSupported
                    | FieldErrorKind::Duplicate
                    | FieldErrorKind::NotFound
            )
        {
            s.push_str(&format!(": {v}"));
        }
        if !self.detail.is_empty() {
            s.push_str(&format!(": {}", self.detail));
        }
        s
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message_part())
    }
}

/// Seconds since the epoch now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// RFC 3339 UTC time with seconds, as Kubernetes writes `metav1.Time`.
pub fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Now as RFC 3339.
pub fn now() -> String {
    rfc3339(now_secs())
}

/// Parses the RFC 3339 times this fake writes (and any with a fraction or an offset), to whole
/// seconds since the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

static RNG: AtomicU64 = AtomicU64::new(0);

/// A pseudo-random number; names and uids need to be unique, not unpredictable.
pub fn random() -> u64 {
    let mut x = RNG.load(Ordering::Relaxed);
    if x == 0 {
        let seed = (SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ (u64::from(std::process::id()) << 32))
            | 1;
        let _ = RNG.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed);
        x = RNG.load(Ordering::Relaxed);
    }
    loop {
        let mut n = x;
        n ^= n << 13;
        n ^= n >> 7;
        n ^= n << 17;
        match RNG.compare_exchange(x, n, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return n,
            Err(cur) => x = cur,
        }
    }
}

/// A version-4 style UUID.
pub fn uid() -> String {
    let a = random();
    let b = random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// `n` characters from the alphabet Kubernetes uses for generated names (no vowels, no 0/1/3).
pub fn suffix(n: usize) -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = random();
    (0..n)
        .map(|_| {
            let c = ALPHA[(x % ALPHA.len() as u64) as usize] as char;
            x /= ALPHA.len() as u64;
            c
        })
        .collect()
}

/// A stable short hash of a JSON value in the same alphabet (pod-template-hash and the like).
pub fn hash_of(v: &Value) -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    // FNV-1a over the canonical JSON text: stable across runs, enough to tell templates apart.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in v.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (0..10)
        .map(|_| {
            let c = ALPHA[(h % ALPHA.len() as u64) as usize] as char;
            h /= ALPHA.len() as u64;
            c
        })
        .collect()
}

/// The string at a JSON pointer, or "".
pub fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// Sets `path` in `v`, making objects on the way.
pub fn set(v: &mut Value, path: &[&str], val: Value) {
    let mut cur = v;
    for (i, k) in path.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let map = cur.as_object_mut().expect("object");
        if i + 1 == path.len() {
            map.insert((*k).to_string(), val);
            return;
        }
        cur = map.entry((*k).to_string()).or_insert_with(|| json!({}));
    }
}

/// Parses a Kubernetes quantity ("1Gi", "500M", "100m", "2") into bytes (rounded down).
pub fn quantity(q: &str) -> Option<u128> {
    let q = q.trim();
    let idx = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, unit) = q.split_at(idx);
    let mult: f64 = match unit {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "m" => 1e-3,
        _ => return None,
    };
    let n: f64 = num.parse().ok()?;
    Some((n * mult) as u128)
}

/// The object's `metadata.name`.
pub fn name_of(v: &Value) -> &str {
    s(v, "/metadata/name")
}

/// The object's `metadata.namespace`.
pub fn ns_of(v: &Value) -> &str {
    s(v, "/metadata/namespace")
}

/// The object's `metadata.uid`.
pub fn uid_of(v: &Value) -> &str {
    s(v, "/metadata/uid")
}

/// Labels of an object (or of a template's metadata) as pairs.
pub fn labels(v: &Value) -> Vec<(String, String)> {
    v.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// An ownerReference naming `owner` (of resource `res`) as its controller.
pub fn controller_ref(res: Res, owner: &Value) -> Value {
    json!({
        "apiVersion": res.api_version(),
        "kind": res.info().kind,
        "name": name_of(owner),
        "uid": uid_of(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Whether `obj` has a controller ownerReference with this uid.
pub fn controlled_by(obj: &Value, owner_uid: &str) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter().any(|r| {
                r.get("uid").and_then(Value::as_str) == Some(owner_uid)
                    && r.get("controller").and_then(Value::as_bool) == Some(true)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_back_as_written() {
        // `date -u -d @1795572000 +%FT%TZ`.
        assert_eq!(rfc3339(1_795_572_000), "2026-11-25T02:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(parse_time("2026-11-25T02:00:00Z"), Some(1_795_572_000));
        assert_eq!(parse_time("2026-11-25T02:00:00.5Z"), Some(1_795_572_000));
        let now = now_secs();
        assert_eq!(parse_time(&rfc3339(now)), Some(now));
        assert_eq!(parse_time(""), None);
    }
}
