//! Building blocks of the settings structures each crate deserializes from its section of a settings file
//! (`[usage_service]` in `wap-usage-client`, `[responder]` in `wap-responder`, `[engine]`, `[state]` and `[admin]`
//! in `wap-billing-engine`): a [`SettingProblem`] naming a key path, and [`SecretSource`], a secret given inline,
//! through an environment variable or in a file.

use std::fmt;
use std::path::PathBuf;

use crate::Secret;

/// One problem found in settings: where (the key path), what was expected, what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SettingProblem {
    /// The key path, e.g. `usage_service.endpoint`.
    pub path: String,
    /// What was expected.
    pub expected: String,
    /// What was found (never a secret's value).
    pub found: String,
}

impl SettingProblem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, expected: impl Into<String>, found: impl Into<String>) -> Self {
        SettingProblem { path: path.into(), expected: expected.into(), found: found.into() }
    }

    /// Whether the same settings could succeed later: only when a secret's environment variable or file was
    /// missing (it may appear); any other problem needs the settings changed.
    pub fn is_retryable(&self) -> bool {
        self.path.ends_with("_env") || self.path.ends_with("_file")
    }
}

impl fmt::Display for SettingProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: expected {}, found {}", self.path, self.expected, self.found)
    }
}

impl std::error::Error for SettingProblem {}

/// Joins a section prefix and a key: `key_path("usage_service", "endpoint")` is `usage_service.endpoint`;
/// an empty prefix gives the key alone.
pub fn key_path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// A secret given inline (`password`), through the name of an environment variable (`password_env`) or in a
/// file (`password_file`, a trailing newline removed). At most one may be given. `Debug` never shows the value.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct SecretSource {
    /// The value itself (discouraged outside tests).
    pub value: Option<Secret>,
    /// The name of an environment variable that holds it.
    pub env: Option<String>,
    /// A file that holds it.
    pub file: Option<PathBuf>,
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSource")
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .field("env", &self.env)
            .field("file", &self.file)
            .finish()
    }
}

impl SecretSource {
    /// The three sources.
    pub fn new(value: Option<Secret>, env: Option<String>, file: Option<PathBuf>) -> Self {
        SecretSource { value, env, file }
    }

    /// Whether any source is given.
    pub fn is_set(&self) -> bool {
        self.value.is_some() || self.env.is_some() || self.file.is_some()
    }

    /// Reads the secret. `path` is the key path of the inline key (e.g. `usage_service.password`); the other two
    /// are named `<path>_env` and `<path>_file` in problems. `Ok(None)` when no source is given.
    pub fn resolve(&self, path: &str) -> Result<Option<Secret>, SettingProblem> {
        let given = [self.value.is_some(), self.env.is_some(), self.file.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(SettingProblem::new(
                path,
                format!("one of {path}, {path}_env, {path}_file"),
                "several of them",
            ));
        }
        let value = if let Some(p) = &self.value {
            p.expose().to_owned()
        } else if let Some(var) = &self.env {
            std::env::var(var).map_err(|_| {
                SettingProblem::new(
                    format!("{path}_env"),
                    format!("the environment variable {var} to be set"),
                    "it is not set (or not UTF-8)",
                )
            })?
        } else if let Some(file) = &self.file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                SettingProblem::new(
                    format!("{path}_file"),
                    "a readable file holding the secret",
                    format!("{}: {e}", file.display()),
                )
            })?;
            text.trim_end_matches(['\n', '\r']).to_owned()
        } else {
            return Ok(None);
        };
        if value.trim().is_empty() {
            return Err(SettingProblem::new(path, "a non-empty secret", "an empty one"));
        }
        Ok(Some(Secret::new(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_one_source_and_never_show() {
        let dir = std::env::temp_dir().join(format!("wap-types-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "from-file-sentinel\n").unwrap();
        let s = SecretSource::new(None, None, Some(file.clone()));
        assert_eq!(s.resolve("a.password").unwrap().unwrap().expose(), "from-file-sentinel");
        assert!(!format!("{s:?}").contains("from-file-sentinel"));

        let s = SecretSource::new(None, Some("WAP_TYPES_TEST_NOT_SET_ANYWHERE".into()), None);
        assert_eq!(s.resolve("a.password").unwrap_err().path, "a.password_env");
        let s = SecretSource::new(None, None, Some(dir.join("missing")));
        let e = s.resolve("a.password").unwrap_err();
        assert_eq!(e.path, "a.password_file");
        assert!(e.is_retryable());
        let s = SecretSource::new(Some(Secret::new("  ")), None, None);
        assert_eq!(s.resolve("a.password").unwrap_err().expected, "a non-empty secret");
        let s = SecretSource::new(Some(Secret::new("inline-sentinel")), Some("B".into()), None);
        let e = s.resolve("a.password").unwrap_err();
        assert!(!e.is_retryable() && !e.to_string().contains("inline-sentinel"), "{e}");
        assert!(!format!("{s:?}").contains("inline-sentinel"));
        assert_eq!(SecretSource::default().resolve("a.password").unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn key_paths_join() {
        assert_eq!(key_path("engine", "retry_max_attempts"), "engine.retry_max_attempts");
        assert_eq!(key_path("", "retry_max_attempts"), "retry_max_attempts");
    }
}
