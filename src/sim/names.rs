//! Name pools, deliberately nasty values, and the concealment hash.
//!
//! The nasty values exist to break connectors that split CSV on commas, trim silently, assume
//! one line per record, or mangle non-ASCII text. They are picked deterministically and often
//! enough (about one user in twelve) to show up in any tenant of a few thousand users.

use sha2::{Digest, Sha256};

pub const GIVEN_NAMES: &[&str] = &[
    "Adele",
    "Alex",
    "Allan",
    "Debra",
    "Diego",
    "Emily",
    "Grady",
    "Henrietta",
    "Isaiah",
    "Johanna",
    "Joni",
    "Lee",
    "Lidia",
    "Lynne",
    "Megan",
    "Miriam",
    "Nestor",
    "Patti",
    "Pradeep",
    "Raul",
    "Sanjay",
    "Sofia",
    "Wei",
    "Yuki",
    "Olga",
    "Kwame",
    "Aisha",
    "Mateo",
    "Chloe",
    "Noah",
];

pub const SURNAMES: &[&str] = &[
    "Vance",
    "Wilber",
    "Deyoung",
    "Berg",
    "Siciliani",
    "Braun",
    "Archie",
    "Mueller",
    "Langer",
    "Lambert",
    "Sherman",
    "Gu",
    "Holloway",
    "Robbins",
    "Bowen",
    "Wilkinson",
    "Gonzalez",
    "Fernandez",
    "Gupta",
    "Tanaka",
    "Okafor",
    "Nakamura",
    "Kowalski",
    "Haddad",
    "Silva",
    "Nguyen",
    "Larsen",
    "Murphy",
    "Rossi",
    "Dubois",
];

pub const DEPARTMENTS: &[&str] = &[
    "Sales",
    "Marketing",
    "Finance",
    "Engineering",
    "Operations",
    "Legal",
    "Human Resources",
    "IT",
    "Customer Success",
    "Research & Development",
    "Retail",
    "Executive Management",
];

pub const JOB_TITLES: &[&str] = &[
    "Sales Manager",
    "Marketing Assistant",
    "Accountant",
    "Software Engineer",
    "Operations Lead",
    "Attorney",
    "HR Specialist",
    "IT Admin",
    "Support Engineer",
    "Researcher",
    "Store Manager",
    "CEO",
    "Product Manager",
    "Data Analyst",
];

pub const OFFICES: &[&str] = &[
    "18/2111",
    "131/1104",
    "20/1101",
    "12/1110",
    "Building 4, Floor 2",
    "Remote",
    "HQ - Atrium",
];

/// (city, state, country, usageLocation, phone prefix)
pub const PLACES: &[(&str, Option<&str>, &str, &str, &str)] = &[
    ("Redmond", Some("WA"), "United States", "US", "+1 425 555 "),
    ("Seattle", Some("WA"), "United States", "US", "+1 206 555 "),
    ("New York", Some("NY"), "United States", "US", "+1 212 555 "),
    ("Amsterdam", None, "Netherlands", "NL", "+31 20 555 "),
    ("München", Some("Bayern"), "Germany", "DE", "+49 89 555 "),
    ("Paris", None, "France", "FR", "+33 1 55 5"),
    ("São Paulo", Some("SP"), "Brazil", "BR", "+55 11 5555 "),
    ("Tokyo", None, "Japan", "JP", "+81 3 5555 "),
    ("Dubai", None, "United Arab Emirates", "AE", "+971 4 555 "),
    ("Tel Aviv", None, "Israel", "IL", "+972 3 555 "),
];

pub const COMPANIES: &[&str] = &["Contoso", "Contoso Ltd.", "Contoso, Inc.", "Fabrikam"];

/// External domains guests come from.
pub const GUEST_DOMAINS: &[&str] = &[
    "fabrikam.com",
    "northwindtraders.com",
    "adatum.net",
    "gmail.com",
];

/// Display names that break naive CSV/JSON handling. Each is used verbatim in `/users` and in
/// the reports' name columns.
pub const NASTY_DISPLAY_NAMES: &[&str] = &[
    "Mustermann, Max",
    "Robert \"Bobby\" Tables",
    "Line\nBreak",
    "Carriage\r\nReturn Person",
    "Zoë 👩\u{200d}💻 Developer",
    "The 👨\u{200d}👩\u{200d}👧\u{200d}👦 Family Account",
    "محمد عبد الله",
    "דוד כהן",
    "Jose\u{301} Mun\u{303}oz",
    "  Padded Name  ",
    "\"Quoted, Comma\"\nand newline",
    "O'Brien; Siobhán",
    "Tab\tSeparated",
    "王小明",
    "=HYPERLINK(\"http://example.com\")",
];

/// A 1–2 KB job title, to catch fixed-width columns and truncation.
pub fn long_job_title(len_hint: usize) -> String {
    let unit = "Senior Principal Vice President of Strategic Cross-Functional Synergy, \"Global\" Operations & Excellence; ";
    let target = 1024 + len_hint % 1024;
    let mut s = String::with_capacity(target + unit.len());
    while s.len() < target {
        s.push_str(unit);
    }
    s.truncate(target);
    s.trim_end().to_string()
}

/// Lower-case ASCII slug of a name for UPNs and mail nicknames.
pub fn slug(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The concealed form of a name in the usage reports: 32 uppercase hex digits derived from
/// the real value (what real tenants show since 2021; the real algorithm is unknown).
pub fn conceal(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push_str(&format!("{b:02X}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concealed_is_32_uppercase_hex_without_at() {
        for v in [
            "jane@contoso.com",
            "",
            "Mustermann, Max",
            "jane_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        ] {
            let c = conceal(v);
            assert_eq!(c.len(), 32, "{c}");
            assert!(
                c.chars()
                    .all(|ch| ch.is_ascii_digit() || ('A'..='F').contains(&ch)),
                "{c}"
            );
            assert!(!c.contains('@'));
        }
        assert_eq!(conceal("a"), conceal("a"));
        assert_ne!(conceal("a"), conceal("b"));
    }

    #[test]
    fn long_job_titles_are_one_to_two_kb() {
        for hint in [0, 500, 1023, 5000] {
            let t = long_job_title(hint);
            assert!((1000..=2048).contains(&t.len()), "{}", t.len());
        }
    }
}
