//! Typed configuration from the environment (12-factor), with defaults that
//! work locally. An [`EnvReader`] reads every variable a binary needs,
//! collects every problem, and [`EnvReader::finish`] reports them all at
//! once, so an operator fixes a bad deployment in one round.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::secret::Secret;

/// Every bad variable, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

/// Reads variables from the process environment (or a map, in tests).
pub struct EnvReader {
    vars: HashMap<String, String>,
    errors: Vec<String>,
    read: Vec<&'static str>,
    log: Option<ReadLog>,
}

/// The names a reader read, kept after a config's `from_reader` consumed it:
/// how a settings table is checked against what the config reads
/// ([`crate::cli::table_problems`]).
#[derive(Debug, Clone, Default)]
pub struct ReadLog(Arc<Mutex<Vec<&'static str>>>);

impl ReadLog {
    /// Every name read so far, in order, repeats included.
    pub fn names(&self) -> Vec<&'static str> {
        self.0.lock().map(|n| n.clone()).unwrap_or_default()
    }
}

impl EnvReader {
    /// Reads from the process environment. Variables that are set but empty
    /// count as unset.
    pub fn from_env() -> Self {
        Self::from_map(std::env::vars())
    }

    pub fn from_map(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            vars: vars.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
            errors: Vec::new(),
            read: Vec::new(),
            log: None,
        }
    }

    /// Reads from `(name, value)` pairs: the environment a test gives a config.
    pub fn from_pairs(vars: &[(&str, &str)]) -> Self {
        Self::from_map(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    /// Also records every name read in `log`.
    #[must_use]
    pub fn logging_to(mut self, log: &ReadLog) -> Self {
        self.log = Some(log.clone());
        self
    }

    /// The raw value, if set.
    pub fn optional(&mut self, name: &'static str) -> Option<String> {
        self.read.push(name);
        if let Some(ReadLog(log)) = &self.log
            && let Ok(mut names) = log.lock()
        {
            names.push(name);
        }
        self.vars.get(name).cloned()
    }

    /// The value, or `default` when unset.
    pub fn string(&mut self, name: &'static str, default: &str) -> String {
        self.optional(name).unwrap_or_else(|| default.to_owned())
    }

    /// The value parsed as `T`, or `default` when unset.
    pub fn parse<T>(&mut self, name: &'static str, default: T) -> T
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.optional(name) {
            None => default,
            Some(raw) => raw.trim().parse().unwrap_or_else(|e| {
                self.errors.push(format!("{name}={raw:?}: {e}"));
                default
            }),
        }
    }

    /// A value that must be set.
    pub fn required(&mut self, name: &'static str) -> String {
        self.optional(name).unwrap_or_else(|| {
            self.errors.push(format!("{name}: must be set"));
            String::new()
        })
    }

    /// A secret, with an optional local-development default.
    pub fn secret(&mut self, name: &'static str, default: Option<&str>) -> Secret {
        match (self.optional(name), default) {
            (Some(v), _) => Secret::new(v),
            (None, Some(d)) => Secret::new(d),
            (None, None) => {
                self.errors.push(format!("{name}: must be set"));
                Secret::new("")
            }
        }
    }

    /// A duration in milliseconds.
    pub fn millis(&mut self, name: &'static str, default: Duration) -> Duration {
        let ms = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.parse(name, ms))
    }

    /// A comma-separated list; empty items are dropped.
    pub fn list(&mut self, name: &'static str, default: &[&str]) -> Vec<String> {
        match self.optional(name) {
            None => default.iter().map(|s| (*s).to_owned()).collect(),
            Some(raw) => raw
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }

    /// A boolean (`true/false/1/0/yes/no`).
    pub fn flag(&mut self, name: &'static str, default: bool) -> bool {
        match self.optional(name).map(|v| v.to_ascii_lowercase()) {
            None => default,
            Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => true,
            Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => false,
            Some(v) => {
                self.errors
                    .push(format!("{name}={v:?}: expected true or false"));
                default
            }
        }
    }

    /// Records a problem found while checking values against each other.
    pub fn error(&mut self, message: impl Into<String>) {
        self.errors.push(message.into());
    }

    /// Every variable name read so far (for the compose consistency test).
    pub fn names_read(&self) -> &[&'static str] {
        &self.read
    }

    /// # Errors
    /// Every problem found, at once.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(self.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_every_error_is_reported_at_once() {
        let mut env = EnvReader::from_pairs(&[
            ("A_PORT", "eighty"),
            ("B_FLAG", "maybe"),
            ("C_LIST", "x, ,y"),
            ("EMPTY", ""),
        ]);
        assert_eq!(env.parse::<u16>("A_PORT", 80), 80);
        assert!(!env.flag("B_FLAG", false));
        assert_eq!(env.list("C_LIST", &[]), vec!["x", "y"]);
        assert_eq!(env.string("EMPTY", "dflt"), "dflt");
        assert_eq!(
            env.millis("D_MS", Duration::from_secs(2)),
            Duration::from_secs(2)
        );
        let _ = env.required("E_REQUIRED");
        let err = env.finish().unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("A_PORT") && text.contains("B_FLAG") && text.contains("E_REQUIRED"),
            "{text}"
        );
    }
}
