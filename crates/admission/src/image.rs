//! Container image references: parsing, normalisation, allow rules, and the regular expressions
//! that let a ValidatingAdmissionPolicy apply the same rules in CEL.
//!
//! The grammar is the one container runtimes use (the `distribution/reference` grammar):
//! `[DOMAIN/]PATH[:TAG][@DIGEST]`. A reference is normalised the way a runtime pulls it: no domain
//! means `docker.io`, `index.docker.io` is `docker.io`, a single-component Docker Hub path gets
//! `library/`, and a reference with neither tag nor digest means `:latest`. When a digest is
//! present the runtime pulls by digest and ignores the tag.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// The registry a reference without a domain is pulled from.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The legacy name of [`DEFAULT_DOMAIN`], normalised to it.
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// The namespace of Docker Hub's single-component ("official") images.
const OFFICIAL_NAMESPACE: &str = "library";
/// The tag a reference without tag and digest means.
pub const DEFAULT_TAG: &str = "latest";

/// Regular expression of one path component (lowercase, separators `.`, `_`, `__`, `-+`).
const COMPONENT_RE: &str = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
/// Regular expression of a tag.
const TAG_RE: &str = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
/// Regular expression of a digest (`algorithm:hex`).
const DIGEST_RE: &str = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";

/// A parsed and normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    domain: String,
    path: Vec<String>,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageRef {
    /// Parses and normalises an image reference as a container runtime would.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let invalid = |why: &str| Error::InvalidImage {
            image: text.to_owned(),
            why: why.to_owned(),
        };
        if text.is_empty() {
            return Err(invalid("it is empty"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                if !is_digest(digest) {
                    return Err(invalid(
                        "the digest is not ALGORITHM:HEX (at least 32 hex digits)",
                    ));
                }
                (rest, Some(digest.to_owned()))
            }
            None => (text, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(tag) = tag
            && !is_tag(tag)
        {
            return Err(invalid(
                "the tag is not 1 to 128 of A-Z a-z 0-9 _ . - (not starting with . or -)",
            ));
        }
        let (domain, remote) = split_domain(name);
        if let Some(domain) = domain
            && !is_domain(domain)
        {
            return Err(invalid("the registry is not HOST[:PORT]"));
        }
        let mut path: Vec<String> = Vec::new();
        for component in remote.split('/') {
            if !is_component(component) {
                return Err(invalid(
                    "a path component is empty or not lowercase letters and digits joined by . _ __ or -",
                ));
            }
            path.push(component.to_owned());
        }
        let domain = match domain {
            None | Some(LEGACY_DEFAULT_DOMAIN) => DEFAULT_DOMAIN.to_owned(),
            Some(domain) => domain.to_owned(),
        };
        if domain == DEFAULT_DOMAIN && path.len() == 1 {
            path.insert(0, OFFICIAL_NAMESPACE.to_owned());
        }
        Ok(Self {
            domain,
            path,
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// The registry, after normalisation (`docker.io` when none was given).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry, after normalisation.
    pub fn path(&self) -> String {
        self.path.join("/")
    }

    /// The tag as written; `None` when the reference has none.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, when the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The tag the runtime resolves: the written one, or `latest` for a reference with neither tag
    /// nor digest. `None` for a digest-only reference.
    fn effective_tag(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(tag), _) => Some(tag),
            (None, None) => Some(DEFAULT_TAG),
            (None, Some(_)) => None,
        }
    }

    fn same_repository(&self, domain: &str, path: &[String]) -> bool {
        self.domain == domain && self.path == path
    }
}

impl fmt::Display for ImageRef {
    /// The normalised form, e.g. `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path.join("/"))?;
        if let Some(tag) = self.effective_tag() {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// One entry of the allowed-image list.
///
/// Written forms:
/// - `REPOSITORY[:TAG]`: that repository at that tag (`latest` when no tag is written), and only
///   without a digest, since a digest overrides the tag when the runtime pulls;
/// - `REPOSITORY[:TAG]@DIGEST`: that repository pinned to that digest (the tag is ignored);
/// - `REPOSITORY:*`: any tag or digest of exactly that repository;
/// - `PREFIX/*`: any repository below `PREFIX`, matched by whole path components (so
///   `quay.io/pvc-backup/*` allows `quay.io/pvc-backup/mover` but not `quay.io/pvc-backupevil/x`);
///   `PREFIX` may be a registry alone, such as `registry.example.com:5000/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRule {
    /// A repository at one tag, without a digest.
    Tag {
        /// Normalised registry.
        domain: String,
        /// Normalised repository path components.
        path: Vec<String>,
        /// The tag.
        tag: String,
    },
    /// A repository pinned to one digest.
    Digest {
        /// Normalised registry.
        domain: String,
        /// Normalised repository path components.
        path: Vec<String>,
        /// The digest, `algorithm:hex`.
        digest: String,
    },
    /// Any tag or digest of one repository.
    Repository {
        /// Normalised registry.
        domain: String,
        /// Normalised repository path components.
        path: Vec<String>,
    },
    /// Any repository below a path prefix (possibly empty: a whole registry).
    Below {
        /// Normalised registry.
        domain: String,
        /// Path components of the prefix; the image path must have more.
        prefix: Vec<String>,
    },
}

impl ImageRule {
    /// Parses one allowed-image rule (see the type's documentation for the forms).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let invalid = |why: String| Error::InvalidRule {
            rule: text.to_owned(),
            why,
        };
        if let Some(prefix) = text.strip_suffix("/*") {
            if !prefix.contains('/') && looks_like_domain(prefix) {
                if !is_domain(prefix) {
                    return Err(invalid("the registry is not HOST[:PORT]".to_owned()));
                }
                let domain = normalise_domain(prefix);
                if domain == DEFAULT_DOMAIN {
                    return Err(invalid(
                        "allowing all of Docker Hub is not supported; name a namespace, such as docker.io/library/*"
                            .to_owned(),
                    ));
                }
                return Ok(Self::Below {
                    domain,
                    prefix: Vec::new(),
                });
            }
            let image = ImageRef::parse(prefix).map_err(|e| invalid(e.to_string()))?;
            if image.tag.is_some() || image.digest.is_some() {
                return Err(invalid("a PREFIX/* rule takes no tag or digest".to_owned()));
            }
            // `docker.io/busybox/*` means below `docker.io/busybox`, not below
            // `docker.io/library/busybox`: take the components as written.
            let (_, remote) = split_domain(prefix);
            return Ok(Self::Below {
                domain: image.domain,
                prefix: remote.split('/').map(str::to_owned).collect(),
            });
        }
        if let Some(repository) = text.strip_suffix(":*") {
            let image = ImageRef::parse(repository).map_err(|e| invalid(e.to_string()))?;
            if image.tag.is_some() || image.digest.is_some() {
                return Err(invalid(
                    "a REPOSITORY:* rule takes no other tag or digest".to_owned(),
                ));
            }
            return Ok(Self::Repository {
                domain: image.domain,
                path: image.path,
            });
        }
        let image = ImageRef::parse(text).map_err(|e| invalid(e.to_string()))?;
        Ok(match image.digest {
            Some(digest) => Self::Digest {
                domain: image.domain,
                path: image.path,
                digest,
            },
            None => Self::Tag {
                domain: image.domain,
                path: image.path,
                tag: image.tag.unwrap_or_else(|| DEFAULT_TAG.to_owned()),
            },
        })
    }

    /// Whether the (normalised) image satisfies this rule.
    pub fn matches(&self, image: &ImageRef) -> bool {
        match self {
            Self::Tag { domain, path, tag } => {
                image.digest.is_none()
                    && image.same_repository(domain, path)
                    && image.effective_tag() == Some(tag.as_str())
            }
            Self::Digest {
                domain,
                path,
                digest,
            } => {
                image.same_repository(domain, path)
                    && image.digest.as_deref() == Some(digest.as_str())
            }
            Self::Repository { domain, path } => image.same_repository(domain, path),
            Self::Below { domain, prefix } => {
                image.domain == *domain
                    && image.path.len() > prefix.len()
                    && image.path.starts_with(prefix)
            }
        }
    }

    /// An anchored regular expression (RE2 syntax, which Kubernetes' CEL `matches` uses) that
    /// matches exactly the image strings, as written in a pod, that this rule allows: every
    /// spelling that normalises to an allowed reference, and nothing else.
    pub fn regex(&self) -> String {
        let (domain, path, suffix) = match self {
            Self::Tag { domain, path, tag } => {
                let suffix = if tag == DEFAULT_TAG {
                    format!("(?::{})?", escape(tag))
                } else {
                    format!(":{}", escape(tag))
                };
                (domain, path, suffix)
            }
            Self::Digest {
                domain,
                path,
                digest,
            } => (domain, path, format!("(?::{TAG_RE})?@{}", escape(digest))),
            Self::Repository { domain, path } => {
                (domain, path, format!("(?::{TAG_RE})?(?:@{DIGEST_RE})?"))
            }
            Self::Below { domain, prefix } => {
                let more = format!("(?:/{COMPONENT_RE})+");
                let body = if domain == DEFAULT_DOMAIN
                    && prefix.len() == 1
                    && prefix[0] == OFFICIAL_NAMESPACE
                {
                    // `busybox` and `docker.io/busybox` are both below docker.io/library.
                    format!("(?:{OFFICIAL_NAMESPACE}{more}|{COMPONENT_RE})")
                } else {
                    format!("{}{more}", escape(&prefix.join("/")))
                };
                let domain_part = domain_regex(domain, prefix.first().map(String::as_str));
                let body = if prefix.is_empty() {
                    // A whole registry: the domain is mandatory and followed by the path.
                    more
                } else {
                    body
                };
                return format!("^{domain_part}{body}(?::{TAG_RE})?(?:@{DIGEST_RE})?$");
            }
        };
        let domain_part = domain_regex(domain, path.first().map(String::as_str));
        let body = if domain == DEFAULT_DOMAIN && path.len() == 2 && path[0] == OFFICIAL_NAMESPACE {
            format!("(?:{OFFICIAL_NAMESPACE}/)?{}", escape(&path[1]))
        } else {
            escape(&path.join("/"))
        };
        format!("^{domain_part}{body}{suffix}$")
    }
}

impl fmt::Display for ImageRule {
    /// The normalised written form of the rule.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag { domain, path, tag } => write!(f, "{domain}/{}:{tag}", path.join("/")),
            Self::Digest {
                domain,
                path,
                digest,
            } => write!(f, "{domain}/{}@{digest}", path.join("/")),
            Self::Repository { domain, path } => write!(f, "{domain}/{}:*", path.join("/")),
            Self::Below { domain, prefix } if prefix.is_empty() => write!(f, "{domain}/*"),
            Self::Below { domain, prefix } => write!(f, "{domain}/{}/*", prefix.join("/")),
        }
    }
}

impl FromStr for ImageRule {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The regular expression for the domain part of a spelling, including its `/`.
///
/// For Docker Hub the domain may be left out, unless the first path component would then be
/// read as a domain (it contains a `.` or is `localhost`).
fn domain_regex(domain: &str, first_component: Option<&str>) -> String {
    if domain == DEFAULT_DOMAIN {
        let hub = format!(
            "(?:{}|{})/",
            escape(DEFAULT_DOMAIN),
            escape(LEGACY_DEFAULT_DOMAIN)
        );
        match first_component {
            Some(first) if !looks_like_domain(first) => format!("(?:{hub})?"),
            _ => hub,
        }
    } else {
        format!("{}/", escape(domain))
    }
}

fn normalise_domain(domain: &str) -> String {
    if domain == LEGACY_DEFAULT_DOMAIN {
        DEFAULT_DOMAIN.to_owned()
    } else {
        domain.to_owned()
    }
}

/// Splits `name` into its domain (when the first component is one) and the rest.
fn split_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest)) if looks_like_domain(first) => (Some(first), rest),
        _ => (None, name),
    }
}

/// The runtime's test for "the first component is a registry": it has a `.` or a `:`, is
/// `localhost`, or has an upper-case letter.
fn looks_like_domain(first: &str) -> bool {
    first.contains('.')
        || first.contains(':')
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

/// `[a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*`
fn is_component(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &s[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn is_tag(s: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `ALGORITHM:HEX`, the algorithm being letters and digits joined by `- _ + .`, the hex part at
/// least 32 digits.
fn is_digest(s: &str) -> bool {
    let Some((algorithm, hex)) = s.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
        let bytes = part.as_bytes();
        !bytes.is_empty()
            && bytes[0].is_ascii_alphabetic()
            && bytes.iter().all(u8::is_ascii_alphanumeric)
    });
    algorithm_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `HOST[:PORT]`, HOST being dot-separated labels of letters, digits and inner hyphens.
fn is_domain(s: &str) -> bool {
    let (host, port) = match s.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    host.split('.').all(|label| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// Escapes the characters that are special in RE2 and may occur in a reference.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '.' | '+' | '*' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '^' | '$' | '\\'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        ImageRef::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_a_runtime() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("dev/backup"), "docker.io/dev/backup:latest");
        assert_eq!(
            norm("index.docker.io/busybox:1"),
            "docker.io/library/busybox:1"
        );
        assert_eq!(
            norm("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("localhost/x"), "localhost/x:latest");
        assert_eq!(norm("localhost:5000"), "docker.io/library/localhost:5000");
        assert_eq!(norm("localhost:5000/a/b:c"), "localhost:5000/a/b:c");
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            norm(&format!("quay.io/x/y@{digest}")),
            format!("quay.io/x/y@{digest}")
        );
        assert_eq!(
            norm(&format!("x:1@{digest}")),
            format!("docker.io/library/x:1@{digest}")
        );
    }

    #[test]
    fn rejects_what_a_runtime_rejects() {
        for bad in [
            "",
            "Busybox",
            "a//b",
            "a/",
            "/a",
            "a:",
            "a:-x",
            "a@sha256:abc",
            "a b",
            "a..b",
            "quay.io/A/b",
            "a:b:c",
            "-a",
            "a-",
            "quay..io/x",
            "quay.io:/x",
            "a@b@c",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn rules_match_whole_components_only() {
        let rule = ImageRule::parse("dev/backup/*").unwrap();
        assert!(rule.matches(&ImageRef::parse("dev/backup/mover").unwrap()));
        assert!(!rule.matches(&ImageRef::parse("dev/backupevil/shell").unwrap()));
        assert!(!rule.matches(&ImageRef::parse("dev/backup").unwrap()));
        let rule = ImageRule::parse("dev/backup:latest").unwrap();
        assert!(rule.matches(&ImageRef::parse("dev/backup").unwrap()));
        assert!(rule.matches(&ImageRef::parse("docker.io/dev/backup:latest").unwrap()));
        assert!(!rule.matches(&ImageRef::parse("dev/backupevil/shell:latest").unwrap()));
        assert!(!rule.matches(&ImageRef::parse("dev/backup:1").unwrap()));
        let digest = format!("sha256:{}", "b".repeat(64));
        assert!(!rule.matches(&ImageRef::parse(&format!("dev/backup:latest@{digest}")).unwrap()));
    }

    #[test]
    fn rule_errors_say_what_is_wrong() {
        let err = ImageRule::parse("docker.io/*").unwrap_err().to_string();
        assert!(err.contains("docker.io/library/*"), "{err}");
        let err = ImageRule::parse("dev/Backup").unwrap_err().to_string();
        assert!(err.contains("dev/Backup"), "{err}");
        assert!(ImageRule::parse("quay.io/x:1/*").is_err());
    }
}
