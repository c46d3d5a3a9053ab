//! The Microsoft identity platform's client-credentials token endpoint, and the tokens it mints.
//!
//! Errors copy the real shapes (graph-api.md §1): an OAuth `error`, an `error_description`
//! that starts with the AADSTS code and ends with trace/correlation ids, `error_codes`, and a
//! timestamp. The submitted secret is never logged or echoed.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde_json::json;

use super::request::percent_decode;

/// The audience of Graph tokens.
pub const GRAPH_AUDIENCE: &str = "https://graph.microsoft.com";
/// The initial domain, accepted in place of the tenant GUID (as is the verified mail domain).
pub const TENANT_DOMAIN: &str = super::tenant::TENANT_DOMAIN;
const SIGNATURE: &[u8] = b"sim-signature";

/// What the token endpoint accepts.
pub struct Credentials<'a> {
    pub tenant_id: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub expired_secret: bool,
}

/// An AADSTS error, before ids and timestamps are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AadError {
    pub status: u16,
    pub error: &'static str,
    pub code: u32,
    /// The text after `AADSTSnnnn: `.
    pub message: String,
}

fn aad(status: u16, error: &'static str, code: u32, message: impl Into<String>) -> AadError {
    AadError {
        status,
        error,
        code,
        message: message.into(),
    }
}

fn missing(param: &str) -> AadError {
    aad(
        400,
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{param}'."),
    )
}

/// True for `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex digits).
pub fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// True for something shaped like a DNS name with at least two labels.
fn is_dns_like(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Checks the `{tenant}` path segment.
pub fn check_tenant(creds: &Credentials<'_>, tenant: &str) -> Result<(), AadError> {
    let verified = [creds.tenant_id, TENANT_DOMAIN, super::tenant::MAIL_DOMAIN];
    if verified.iter().any(|v| tenant.eq_ignore_ascii_case(v)) {
        return Ok(());
    }
    if tenant.eq_ignore_ascii_case("common") || tenant.eq_ignore_ascii_case("consumers") {
        return Err(aad(
            400,
            "invalid_request",
            9001023,
            "The grant type isn't supported over the /common or /consumers endpoints. Please use the /organizations or tenant-specific endpoint.",
        ));
    }
    if is_guid(tenant) || is_dns_like(tenant) {
        return Err(aad(
            400,
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        ));
    }
    Err(aad(
        400,
        "invalid_request",
        900023,
        format!(
            "Specified tenant identifier '{tenant}' is neither a valid DNS name, nor a valid external domain."
        ),
    ))
}

/// Validates a client-credentials request: form pairs plus an optional `Authorization: Basic`.
/// Returns the granted client id.
pub fn check_request(
    creds: &Credentials<'_>,
    tenant: &str,
    form: &[(String, String)],
    basic_auth: Option<&str>,
) -> Result<(), AadError> {
    check_tenant(creds, tenant)?;
    let get = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };

    // RFC 6749 §2.3.1: id and secret may come in a Basic header, each form-urlencoded.
    let basic = basic_auth.and_then(|h| {
        let raw = h
            .strip_prefix("Basic ")
            .or_else(|| h.strip_prefix("basic "))?;
        let decoded = String::from_utf8(STANDARD.decode(raw.trim()).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        Some((percent_decode(id, true)?, percent_decode(secret, true)?))
    });

    let grant_type = get("grant_type").ok_or_else(|| missing("grant_type"))?;
    if grant_type != "client_credentials" {
        return Err(aad(
            400,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant_type}'."),
        ));
    }
    let client_id = get("client_id")
        .map(str::to_string)
        .or_else(|| basic.as_ref().map(|b| b.0.clone()))
        .ok_or_else(|| missing("client_id"))?;
    if !client_id.eq_ignore_ascii_case(creds.client_id) {
        return Err(aad(
            400,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        ));
    }
    let secret = get("client_secret")
        .map(str::to_string)
        .or_else(|| basic.map(|b| b.1));
    let Some(secret) = secret else {
        return Err(aad(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ));
    };
    if secret != creds.client_secret {
        return Err(aad(
            401,
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                creds.client_id
            ),
        ));
    }
    if creds.expired_secret {
        return Err(aad(
            401,
            "invalid_client",
            7000222,
            format!(
                "The provided client secret keys for app '{}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.",
                creds.client_id
            ),
        ));
    }
    let scope = get("scope").ok_or_else(|| missing("scope"))?;
    let scope = scope.trim();
    if scope.contains(char::is_whitespace)
        || !scope.ends_with("/.default")
        || scope.len() <= "/.default".len()
    {
        return Err(aad(
            400,
            "invalid_scope",
            70011,
            format!(
                "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        ));
    }
    Ok(())
}

/// The JSON body of an AADSTS error.
pub fn aad_error_body(
    e: &AadError,
    trace_id: &str,
    correlation_id: &str,
    now: DateTime<Utc>,
) -> Vec<u8> {
    let ts = now.format("%Y-%m-%d %H:%M:%SZ").to_string();
    let body = json!({
        "error": e.error,
        "error_description": format!(
            "AADSTS{}: {}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {ts}",
            e.code, e.message
        ),
        "error_codes": [e.code],
        "timestamp": ts,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": format!("https://login.microsoftonline.com/error?code={}", e.code),
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Mints an access token. Roles are omitted entirely when empty, as Entra does for an app
/// without admin consent.
pub fn mint(
    tenant_id: &str,
    client_id: &str,
    roles: &[String],
    jti: &str,
    iat: i64,
    lifetime: u64,
) -> String {
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": "sim-key"});
    let mut payload = json!({
        "aud": GRAPH_AUDIENCE,
        "iss": format!("https://sts.windows.net/{tenant_id}/"),
        "iat": iat,
        "nbf": iat,
        "exp": iat + lifetime as i64,
        "app_displayname": "m365-connector (simulated)",
        "appid": client_id,
        "idtyp": "app",
        "tid": tenant_id,
        "ver": "1.0",
        "jti": jti,
    });
    if !roles.is_empty() {
        payload["roles"] = json!(roles);
    }
    let enc =
        |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap_or_default());
    format!(
        "{}.{}.{}",
        enc(&header),
        enc(&payload),
        URL_SAFE_NO_PAD.encode(SIGNATURE)
    )
}

/// The success body of the token endpoint.
pub fn success_body(access_token: &str, lifetime: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access_token,
    }))
    .unwrap_or_default()
}

/// The claims Graph checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub jti: String,
    pub exp: i64,
    pub roles: Vec<String>,
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Not a token of this simulator, or for another audience/tenant.
    Malformed,
    /// Past `exp` (or revoked by the token-expiry fault).
    Expired,
}

/// Decodes and checks a bearer token's structure, audience, tenant and lifetime.
/// Whether this simulator issued it (and has not revoked it) is checked by the caller.
pub fn decode(token: &str, tenant_id: &str, now: i64) -> Result<Claims, Invalid> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Invalid::Malformed);
    };
    if URL_SAFE_NO_PAD.decode(sig).ok().as_deref() != Some(SIGNATURE) {
        return Err(Invalid::Malformed);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| Invalid::Malformed)?;
    let v: serde_json::Value = serde_json::from_slice(&payload).map_err(|_| Invalid::Malformed)?;
    if v["aud"] != GRAPH_AUDIENCE || v["tid"].as_str() != Some(tenant_id) {
        return Err(Invalid::Malformed);
    }
    let (Some(jti), Some(exp), Some(nbf)) =
        (v["jti"].as_str(), v["exp"].as_i64(), v["nbf"].as_i64())
    else {
        return Err(Invalid::Malformed);
    };
    if now >= exp || now + 300 < nbf {
        return Err(Invalid::Expired);
    }
    let roles = v["roles"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(Claims {
        jti: jti.to_string(),
        exp,
        roles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TID: &str = "8f6e2c3a-1b4d-4e5f-9a7b-0c1d2e3f4a5b";
    const CID: &str = "5d7e9f1a-2b3c-4d5e-8f9a-0b1c2d3e4f5a";

    fn creds() -> Credentials<'static> {
        Credentials {
            tenant_id: TID,
            client_id: CID,
            client_secret: "s3cret",
            expired_secret: false,
        }
    }

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn good() -> Vec<(String, String)> {
        form(&[
            ("client_id", CID),
            ("client_secret", "s3cret"),
            ("scope", "https://graph.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
        ])
    }

    #[test]
    fn accepts_guid_and_domain() {
        assert_eq!(check_request(&creds(), TID, &good(), None), Ok(()));
        assert_eq!(
            check_request(&creds(), "Contoso.onmicrosoft.com", &good(), None),
            Ok(())
        );
    }

    #[test]
    fn tenant_errors() {
        let e = check_request(
            &creds(),
            "11111111-2222-3333-4444-555555555555",
            &good(),
            None,
        )
        .unwrap_err();
        assert_eq!((e.status, e.error, e.code), (400, "invalid_request", 90002));
        let e = check_request(&creds(), "asdf", &good(), None).unwrap_err();
        assert_eq!(e.code, 900023);
        assert!(e.message.contains("'asdf'"));
        assert_eq!(
            check_request(&creds(), "common", &good(), None)
                .unwrap_err()
                .code,
            9001023
        );
    }

    #[test]
    fn credential_errors_never_echo_the_secret() {
        let mut f = good();
        f[1].1 = "wrong-secret-value".into();
        let e = check_request(&creds(), TID, &f, None).unwrap_err();
        assert_eq!(
            (e.status, e.error, e.code),
            (401, "invalid_client", 7000215)
        );
        assert!(!e.message.contains("wrong-secret-value"));
        let body = String::from_utf8(aad_error_body(&e, "t", "c", Utc::now())).unwrap();
        assert!(!body.contains("wrong-secret-value"));
        assert!(body.contains("\"error_codes\":[7000215]"));

        let mut f = good();
        f[0].1 = "00000000-0000-0000-0000-000000000001".into();
        let e = check_request(&creds(), TID, &f, None).unwrap_err();
        assert_eq!(
            (e.status, e.error, e.code),
            (400, "unauthorized_client", 700016)
        );

        let expired = Credentials {
            expired_secret: true,
            ..creds()
        };
        assert_eq!(
            check_request(&expired, TID, &good(), None)
                .unwrap_err()
                .code,
            7000222
        );

        let mut f = good();
        f[3].1 = "password".into();
        assert_eq!(
            check_request(&creds(), TID, &f, None).unwrap_err().error,
            "unsupported_grant_type"
        );

        let mut f = good();
        f[2].1 = "https://graph.microsoft.com/User.Read".into();
        let e = check_request(&creds(), TID, &f, None).unwrap_err();
        assert_eq!((e.error, e.code), ("invalid_scope", 70011));

        assert_eq!(
            check_request(&creds(), TID, &good()[..3], None)
                .unwrap_err()
                .code,
            900144
        );
    }

    #[test]
    fn basic_auth_is_accepted() {
        let f = form(&[
            ("scope", "https://graph.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
        ]);
        let header = format!("Basic {}", STANDARD.encode(format!("{CID}:s3cret")));
        assert_eq!(check_request(&creds(), TID, &f, Some(&header)), Ok(()));
    }

    #[test]
    fn minted_tokens_decode_and_expire() {
        let roles = vec!["Reports.Read.All".to_string()];
        let t = mint(TID, CID, &roles, "jti-1", 1_000, 60);
        let c = decode(&t, TID, 1_030).unwrap();
        assert_eq!(c.jti, "jti-1");
        assert_eq!(c.roles, roles);
        assert_eq!(decode(&t, TID, 1_060), Err(Invalid::Expired));
        assert_eq!(decode(&t, "other", 1_030), Err(Invalid::Malformed));
        assert_eq!(decode("abc", TID, 1_030), Err(Invalid::Malformed));
        // No roles: the claim is absent, not an empty array.
        let t = mint(TID, CID, &[], "jti-2", 1_000, 60);
        let payload = URL_SAFE_NO_PAD
            .decode(t.split('.').nth(1).unwrap())
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert!(v.get("roles").is_none());
        assert_eq!(v["aud"], GRAPH_AUDIENCE);
    }
}
