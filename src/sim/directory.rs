//! The directory side of a simulated person beyond the base record, as types: on-premises
//! identity (synced and cloud-only users), mail aliases, guests' invitation state, HR
//! attributes, the manager and sign-in activity. `identity.rs` generates them.
//!
//! Shapes follow graph-api.md §2: `proxyAddresses` keeps Exchange's `SMTP:` (primary) and
//! `smtp:` (alias) prefixes; a guest's `otherMails` holds the address it was invited with;
//! `onPremisesDistinguishedName` escapes RFC 4514 specials; sign-in dates never set are
//! `0001-01-01T00:00:00Z`, and a user that never signed in has no `signInActivity` at all.
//!
//! Hygiene problems an admin should see are planted at known rates: a shared `otherMails`
//! address, an alias equal to the next user's mail, stale directory sync, managers who are
//! not users of the tenant (deleted, or an organizational contact).

use chrono::NaiveDateTime;

/// The on-premises Active Directory domain synced users come from.
pub const ON_PREM_DOMAIN: &str = "contoso.local";

/// An address several people list in `otherMails` (a shared helpdesk mailbox).
pub const SHARED_OTHER_MAIL: &str = "it-helpdesk@contoso.com";

/// A user's on-premises identity (synced, or synced once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OnPrem {
    pub sam_account_name: String,
    pub distinguished_name: String,
    pub immutable_id: String,
    pub domain_name: &'static str,
    pub last_sync: NaiveDateTime,
}

/// The directory attributes of one user beyond the base record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Directory {
    pub on_prem: Option<OnPrem>,
    pub proxy_addresses: Vec<String>,
    pub other_mails: Vec<String>,
    pub employee_type: Option<&'static str>,
    pub employee_hire_date: Option<NaiveDateTime>,
    pub external_user_state: Option<&'static str>,
    pub creation_type: Option<&'static str>,
}

/// Who a user reports to, as Graph's `manager` navigation names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manager {
    /// User `i` of the tenant (it may have been removed since: then it dangles).
    User(u64),
    /// A user id no `/users` page returns (deleted long ago).
    Gone(String),
    /// An organizational contact (`#microsoft.graph.orgContact`), not a user.
    Contact(String),
}

/// `signInActivity` of one user; `None` fields were never set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIns {
    pub last: Option<NaiveDateTime>,
    pub last_non_interactive: Option<NaiveDateTime>,
    pub last_successful: Option<NaiveDateTime>,
    pub request_id: String,
}

/// Escapes an RDN value per RFC 4514 (what AD shows in a distinguished name).
pub(crate) fn escape_rdn(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 4);
    for (n, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (n == 0 && (c == '#' || c == ' '))
            || (n + 1 == v.chars().count() && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// sAMAccountName: at most 20 characters, none of `"/\[]:;|=,+*?<>@` or spaces.
pub(crate) fn sam_account_name(local: &str) -> String {
    local
        .chars()
        .filter(|c| !"\"/\\[]:;|=,+*?<>@ ".contains(*c) && !c.is_control())
        .take(20)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_escape_rfc4514_specials() {
        assert_eq!(escape_rdn("Smith, John"), "Smith\\, John");
        assert_eq!(escape_rdn("#1 \"Boss\""), "\\#1 \\\"Boss\\\"");
        assert_eq!(escape_rdn("a+b=c;<d>\\"), "a\\+b\\=c\\;\\<d\\>\\\\");
        assert_eq!(
            sam_account_name("Zoë.O'Brien_Smith1234567"),
            "Zoë.O'Brien_Smith123"
        );
    }
}
