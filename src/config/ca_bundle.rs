//! The extra trusted roots of `tenant.ca_bundle` (for TLS-inspecting proxies).
//!
//! Read twice, on purpose: at validation, so a bad bundle is an error at its line in the
//! connector file, and by the Graph client, which adds the certificates to its TLS roots.

use std::path::Path;

/// The certificates of a PEM bundle (`tenant.ca_bundle`); the error says what to fix.
pub fn load_ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read the CA bundle {}: {e}; point it at a PEM file with your proxy's root certificate",
            path.display()
        )
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        format!(
            "{} is not a PEM certificate bundle ({e}); export the root certificate as Base-64 (PEM), \"-----BEGIN CERTIFICATE-----\"",
            path.display()
        )
    })?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no certificate; export the root certificate as Base-64 (PEM), \"-----BEGIN CERTIFICATE-----\"",
            path.display()
        ));
    }
    Ok(certs)
}
