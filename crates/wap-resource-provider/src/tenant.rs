//! Tenant URI translation (docs/protocol/resource-provider.md §3): source and target templates with `{name}` (one segment)
//! and `{*name}` (the rest, possibly empty), as the Tenant API applies them before forwarding to the provider.

use std::fmt;
use std::str::FromStr;

/// A template is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid URI template {template:?}: {reason}")]
#[non_exhaustive]
pub struct TemplateError {
    /// The template.
    pub template: String,
    /// What is wrong.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    CatchAll(String),
}

/// A parsed URI template such as `{subid}/services/sqlservers/{*path}`.
///
/// Literal segments match ignoring ASCII case; `{name}` binds exactly one non-empty segment; `{*name}` (last
/// only) binds the rest of the path, possibly empty. Parameter names are matched ignoring case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriTemplate {
    text: String,
    segments: Vec<Segment>,
}

/// The values a path bound to a template's parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateMatch {
    values: Vec<(String, String)>,
}

impl TemplateMatch {
    /// The value bound to `name` (ignoring case). A catch-all that matched nothing is `Some("")`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The subscription id (`{subid}`), if the template has one.
    pub fn subscription_id(&self) -> Option<&str> {
        self.get("subid")
    }
}

impl UriTemplate {
    /// Parses a template. Leading and trailing `/` are ignored.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let fail = |reason: String| TemplateError { template: text.to_owned(), reason };
        let trimmed = text.trim().trim_matches('/');
        let mut segments = Vec::new();
        if !trimmed.is_empty() {
            for raw in trimmed.split('/') {
                if raw.is_empty() {
                    return Err(fail("empty segment (`//`)".into()));
                }
                if let Some(catch_all) = raw.strip_prefix("{*").and_then(|r| r.strip_suffix('}')) {
                    segments.push(Segment::CatchAll(check_name(catch_all).map_err(fail)?));
                } else if let Some(name) = raw.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                    segments.push(Segment::Param(check_name(name).map_err(fail)?));
                } else if raw.contains(['{', '}']) {
                    return Err(fail(format!("segment {raw:?} mixes text and a parameter")));
                } else {
                    segments.push(Segment::Literal(raw.to_owned()));
                }
            }
        }
        let last = segments.len().saturating_sub(1);
        if segments.iter().enumerate().any(|(i, s)| matches!(s, Segment::CatchAll(_)) && i != last) {
            return Err(fail("a catch-all parameter `{*name}` must be the last segment".into()));
        }
        let names: Vec<&str> = segments
            .iter()
            .filter_map(|s| match s {
                Segment::Param(n) | Segment::CatchAll(n) => Some(n.as_str()),
                Segment::Literal(_) => None,
            })
            .collect();
        for (i, n) in names.iter().enumerate() {
            if names[..i].iter().any(|m| m.eq_ignore_ascii_case(n)) {
                return Err(fail(format!("parameter {n:?} appears twice")));
            }
        }
        Ok(UriTemplate { text: text.trim().to_owned(), segments })
    }

    /// The implicit source of a provider registered with a target only: `{subid}/services/<name>/{*path}`
    /// (the project's assumption, docs/protocol/resource-provider.md §3).
    pub fn implicit_source(provider_name: &str) -> Self {
        UriTemplate {
            text: format!("{{subid}}/services/{provider_name}/{{*path}}"),
            segments: vec![
                Segment::Param("subid".into()),
                Segment::Literal("services".into()),
                Segment::Literal(provider_name.to_owned()),
                Segment::CatchAll("path".into()),
            ],
        }
    }

    /// The template text as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parameter names, in order.
    pub fn parameter_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(n) | Segment::CatchAll(n) => Some(n.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Matches a path (no query string; a leading `/` is ignored). `None` when the path does not fit.
    pub fn match_path(&self, path: &str) -> Option<TemplateMatch> {
        let mut rest = path.strip_prefix('/').unwrap_or(path);
        let mut values = Vec::new();
        for segment in &self.segments {
            if let Segment::CatchAll(name) = segment {
                values.push((name.clone(), rest.trim_end_matches('/').to_owned()));
                rest = "";
                continue;
            }
            let (head, tail) = rest.split_once('/').unwrap_or((rest, ""));
            if head.is_empty() {
                return None;
            }
            match segment {
                Segment::Literal(lit) if lit.eq_ignore_ascii_case(head) => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) => values.push((name.clone(), head.to_owned())),
                Segment::CatchAll(_) => unreachable!("handled above"),
            }
            rest = tail;
        }
        rest.trim_matches('/').is_empty().then_some(TemplateMatch { values })
    }

    /// Fills the template with `values`; an empty catch-all leaves no trailing slash. `None` when a parameter
    /// has no value.
    pub fn expand(&self, values: &TemplateMatch) -> Option<String> {
        let mut parts: Vec<&str> = Vec::with_capacity(self.segments.len());
        for segment in &self.segments {
            match segment {
                Segment::Literal(lit) => parts.push(lit),
                Segment::Param(name) => parts.push(values.get(name).filter(|v| !v.is_empty())?),
                Segment::CatchAll(name) => {
                    let v = values.get(name)?;
                    if !v.is_empty() {
                        parts.push(v);
                    }
                }
            }
        }
        Some(parts.join("/"))
    }
}

fn check_name(name: &str) -> Result<String, String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("parameter name {name:?} must be letters, digits or `_`"));
    }
    Ok(name.to_owned())
}

impl FromStr for UriTemplate {
    type Err = TemplateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UriTemplate::parse(s)
    }
}

impl fmt::Display for UriTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The tenant endpoint's translation: forwarding address, source and target templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantUriMapping {
    forwarding_address: String,
    source: UriTemplate,
    target: UriTemplate,
}

impl TenantUriMapping {
    /// A mapping. `source = None` uses the implicit `{subid}/services/<provider_name>/{*path}`. Every parameter
    /// of the target must be bound by the source.
    pub fn new(
        provider_name: &str,
        forwarding_address: &str,
        source: Option<&str>,
        target: &str,
    ) -> Result<Self, TemplateError> {
        let source = match source {
            Some(s) => UriTemplate::parse(s)?,
            None => UriTemplate::implicit_source(provider_name),
        };
        let target = UriTemplate::parse(target)?;
        for name in target.parameter_names() {
            if !source.parameter_names().any(|n| n.eq_ignore_ascii_case(name)) {
                return Err(TemplateError {
                    template: target.text.clone(),
                    reason: format!("parameter {name:?} is not bound by the source template {:?}", source.text),
                });
            }
        }
        Ok(TenantUriMapping { forwarding_address: forwarding_address.trim().to_owned(), source, target })
    }

    /// The source template (the implicit one when none was given).
    pub fn source(&self) -> &UriTemplate {
        &self.source
    }

    /// The target template.
    pub fn target(&self) -> &UriTemplate {
        &self.target
    }

    /// What the provider receives for a Tenant API path (relative to the Tenant API root, query string
    /// included): the forwarding address and the filled target joined with exactly one `/`, the query passed
    /// on unchanged. `None` when the source does not match (not translated).
    pub fn translate(&self, incoming: &str) -> Option<String> {
        let (path, query) = match incoming.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (incoming, None),
        };
        let bound = self.source.match_path(path)?;
        let translated = self.target.expand(&bound)?;
        let mut out = if translated.is_empty() {
            self.forwarding_address.clone()
        } else {
            format!("{}/{}", self.forwarding_address.trim_end_matches('/'), translated.trim_start_matches('/'))
        };
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        Some(out)
    }

    /// On the provider's side: reads a request path it received (absolute path, no query) back into the
    /// parameters, by stripping the forwarding address's path and matching the target template. Gives the
    /// `{subid}` a tenant route acts on.
    pub fn parse_forwarded(&self, received_path: &str) -> Option<TemplateMatch> {
        let base = forwarding_path(&self.forwarding_address);
        let base = base.trim_end_matches('/');
        let rest = if base.is_empty() {
            received_path
        } else {
            let head = received_path.get(..base.len())?;
            if !head.eq_ignore_ascii_case(base) {
                return None;
            }
            let rest = &received_path[base.len()..];
            if !(rest.is_empty() || rest.starts_with('/')) {
                return None;
            }
            rest
        };
        self.target.match_path(rest)
    }
}

/// The path of an absolute URL (`https://host:1/a/b` → `/a/b`); the text itself when it has no scheme.
fn forwarding_path(address: &str) -> &str {
    match address.split_once("://") {
        Some((_, after)) => after.find('/').map_or("", |i| &after[i..]),
        None => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_and_reject_bad_shapes() {
        let t = UriTemplate::parse("{subid}/services/sqlservers/{*path}").unwrap();
        assert_eq!(t.parameter_names().collect::<Vec<_>>(), ["subid", "path"]);
        assert!(UriTemplate::parse("{*path}/x").is_err());
        assert!(UriTemplate::parse("a//b").is_err());
        assert!(UriTemplate::parse("db{id}").is_err());
        assert!(UriTemplate::parse("{a}/{A}").is_err());
        assert!(UriTemplate::parse("{}").is_err());
        assert!(TenantUriMapping::new("x", "https://h/", Some("{subid}/x"), "{subid}/{*path}").is_err());
    }

    #[test]
    fn match_and_expand_follow_the_joining_rules() {
        let t = UriTemplate::parse("{subid}/services/backup/{*path}").unwrap();
        let m = t.match_path("/s1/SERVICES/backup/jobs/42/").unwrap();
        assert_eq!(m.subscription_id(), Some("s1"));
        assert_eq!(m.get("PATH"), Some("jobs/42"));
        assert!(t.match_path("/s1/services").is_none());
        assert!(t.match_path("//services/backup").is_none());
        let target = UriTemplate::parse("subscriptions/{subid}/{*path}").unwrap();
        assert_eq!(target.expand(&m).unwrap(), "subscriptions/s1/jobs/42");
        let exact = UriTemplate::parse("{subid}/jobs").unwrap();
        assert!(exact.match_path("/s1/jobs/").is_some());
        assert!(exact.match_path("/s1/jobs/x").is_none());
    }

    #[test]
    fn provider_side_parses_forwarded_paths() {
        let m =
            TenantUriMapping::new("sqlservers", "https://sql.corp.test:30010/subscriptions", None, "{subid}/{*path}")
                .unwrap();
        assert_eq!(m.source().as_str(), "{subid}/services/sqlservers/{*path}");
        let p = m.parse_forwarded("/subscriptions/s1/databases/db7").unwrap();
        assert_eq!(p.subscription_id(), Some("s1"));
        assert_eq!(p.get("path"), Some("databases/db7"));
        assert!(m.parse_forwarded("/other/s1").is_none());
        assert!(m.parse_forwarded("/subscriptionsX/s1").is_none());
    }
}
