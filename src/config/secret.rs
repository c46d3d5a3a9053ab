//! The client secret: where it comes from ([`SecretSource`]), how it is read
//! ([`Config::secret`]) and the type that holds it ([`Secret`]).
//!
//! Kept in one file so the whole life of the secret can be audited at once: the connector
//! file only names an env var or a 0600 file (validation refuses a value written inline),
//! so the value is never in [`Config`]; it is read when a command needs it, and the type
//! holding it cannot be printed by accident.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{Config, ConfigError};

/// The client secret's value. Debug and Display print `[redacted]`, so it cannot leak
/// through a log line, an error or a panic message by accident.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The only way to read the value; grep for it to audit every use.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where the secret value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env { var: String, line: usize },
    File { path: PathBuf, line: usize },
}

impl Config {
    /// Reads the client secret from its env var or 0600 file.
    pub fn secret(&self) -> Result<Secret, ConfigError> {
        match &self.tenant.secret {
            SecretSource::Env { var, line } => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim().to_string())),
                Ok(_) => Err(self.err_at(
                    *line,
                    "tenant.client_secret_env",
                    &format!(
                        "the environment variable {var} is empty: set it to the client secret's Value (Entra admin center > App registrations > your app > Certificates & secrets)"
                    ),
                )),
                Err(_) => Err(self.err_at(
                    *line,
                    "tenant.client_secret_env",
                    &format!(
                        "the environment variable {var} is not set: export {var}=<client secret value> (the secret's Value, not its Secret ID), or use client_secret_file"
                    ),
                )),
            },
            SecretSource::File { path, line } => {
                check_secret_file_mode(path).map_err(|m| {
                    self.err_at(*line, "tenant.client_secret_file", &m)
                })?;
                let v = std::fs::read_to_string(path).map_err(|e| {
                    self.err_at(*line, "tenant.client_secret_file", &unreadable_secret_file(path, &e))
                })?;
                let v = v.trim();
                if v.is_empty() {
                    return Err(self.err_at(
                        *line,
                        "tenant.client_secret_file",
                        &format!("{} is empty: write the client secret's Value into it", path.display()),
                    ));
                }
                Ok(Secret::new(v.to_string()))
            }
        }
    }

    fn err_at(&self, line: usize, key: &str, message: &str) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            line: Some(line),
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Why the secret file cannot be read, and what to do.
fn unreadable_secret_file(path: &Path, e: &std::io::Error) -> String {
    let fix = if e.kind() == std::io::ErrorKind::NotFound {
        "create it holding only the client secret's Value (then `chmod 600` it), or fix the path: a relative path starts at the connector file's folder"
    } else {
        "make it a file the connector's user can read (mode 0600, owned by that user)"
    };
    format!("cannot read {}: {e}: {fix}", path.display())
}

#[cfg(unix)]
fn check_secret_file_mode(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| unreadable_secret_file(path, &e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is readable by others (mode {mode:03o}): run `chmod 600 {}` so only its owner can read the secret",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_secret_file_mode(_path: &Path) -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{GOOD, parse};
    use super::*;

    #[test]
    fn missing_secret_env_is_clear() {
        let c = parse(&GOOD.replace("M365_TEST_SECRET_X", "M365_SURELY_UNSET_VAR_123")).unwrap();
        let e = c.secret().unwrap_err();
        assert_eq!(e.line, Some(7));
        assert!(
            e.message.contains("M365_SURELY_UNSET_VAR_123 is not set"),
            "{e}"
        );
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "[redacted] Secret([redacted])");
    }
}
