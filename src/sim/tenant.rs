//! The synthetic tenant: users and usage-report rows as pure functions of (seed, index, today).
//!
//! Nothing is stored: user `i` is regenerated whenever it is needed, so `/users` pages and
//! report downloads of a million-user tenant cost no memory, and tests can call the same
//! functions to know exactly what the simulator served.
//!
//! Reports: each user appears in about 90% of each report (guests in fewer mailbox and
//! OneDrive reports); activations has a row per product type, two for some users. Rows for
//! deleted users (`Is Deleted` True, UPN not in `/users`), report-only accounts (shared
//! mailboxes) and two `(Unknown)` rows are interleaved. Report UPNs are sometimes upper- or
//! lower-cased relative to `/users`, so joins must ignore case. With `concealed`, every name,
//! Teams user id and OneDrive URL is a 32-hex hash of the real value ([`conceal`]).
//!
//! Cell formats: dates `YYYY-MM-DD` or empty, booleans `True`/`False`, counts and bytes as
//! integers, "Assigned Products" joined with `+` (one product name itself contains " + ").
//! Where Microsoft's docs leave a format open (graph-api.md §8) the simulator picks one, and a
//! client should accept others: `Yes`/`No` in the getM365AppUserDetail app columns and
//! Teams' "Has Other Action", `HH:MM:SS` Teams durations next to the "... In Seconds" columns.

use chrono::{Days, NaiveDate, NaiveDateTime};
use serde_json::{Map, Value};

use super::directory::{Directory, Manager, SignIns};
use super::names::{self, conceal, slug};
use super::prng::{Rng, format_guid, mix, salt};
use super::skus::{self, SKUS};
use crate::streams::{Report, USER_SELECT};

/// The tenant's initial domain (UPNs) and its mail domain.
pub const TENANT_DOMAIN: &str = "contoso.onmicrosoft.com";
pub const MAIL_DOMAIN: &str = "contoso.com";
pub const TENANT_DISPLAY_NAME: &str = "Contoso";

/// Graph's default property set for `/users` without `$select`, in the docs' order.
pub const DEFAULT_USER_PROPERTIES: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

/// Properties the simulator generates values for, beyond USER_SELECT and the default set.
const EXTRA_PROPERTIES: &[&str] = &["mailNickname", "imAddresses"];

/// Real user properties the simulator knows but always serves as `null`.
const NULL_PROPERTIES: &[&str] = &[
    "ageGroup",
    "consentProvidedForMinor",
    "deletedDateTime",
    "employeeLeaveDateTime",
    "externalUserStateChangeDateTime",
    "faxNumber",
    "legalAgeGroupClassification",
    "onPremisesSecurityIdentifier",
    "onPremisesUserPrincipalName",
    "passwordPolicies",
    "postalCode",
    "showInAddressList",
    "streetAddress",
];

/// Properties that exist on the user resource but cannot be listed (Graph answers 501).
pub const NOT_LISTABLE_PROPERTIES: &[&str] = &[
    "aboutMe",
    "birthday",
    "hireDate",
    "interests",
    "mySite",
    "pastProjects",
    "preferredName",
    "responsibilities",
    "schools",
    "skills",
    "mailboxSettings",
];

/// Served properties beyond USER_SELECT and the default set (generated or always null).
pub(crate) fn other_served_properties() -> impl Iterator<Item = &'static str> {
    EXTRA_PROPERTIES.iter().chain(NULL_PROPERTIES).copied()
}

/// How a `$select` item resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyKind {
    /// A property the simulator serves; carries its canonical spelling.
    Served(&'static str),
    /// A real property that cannot be listed (501).
    NotListable(&'static str),
    /// `signInActivity`: needs AuditLog.Read.All and a premium tenant.
    SignInActivity,
    Unknown,
}

/// Resolves a `$select` item case-insensitively, as Graph does.
pub fn property_kind(name: &str) -> PropertyKind {
    let find = |list: &[&'static str]| list.iter().copied().find(|p| p.eq_ignore_ascii_case(name));
    if let Some(p) = find(USER_SELECT)
        .or_else(|| find(DEFAULT_USER_PROPERTIES))
        .or_else(|| find(EXTRA_PROPERTIES))
        .or_else(|| find(NULL_PROPERTIES))
    {
        return PropertyKind::Served(p);
    }
    if let Some(p) = find(NOT_LISTABLE_PROPERTIES) {
        return PropertyKind::NotListable(p);
    }
    if name.eq_ignore_ascii_case("signInActivity") {
        return PropertyKind::SignInActivity;
    }
    PropertyKind::Unknown
}

/// A deterministic synthetic tenant. Cheap to copy; holds no users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenant {
    pub seed: u64,
    pub users: u64,
    pub today: NaiveDate,
    pub concealed: bool,
}

/// One licence assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct License {
    pub sku: usize,
    /// The Teams plan is in `disabledPlans`.
    pub teams_disabled: bool,
}

/// One generated user, typed; serialised property by property for `$select`.
#[derive(Debug, Clone)]
pub(crate) struct UserRec {
    pub id: String,
    pub upn: String,
    pub display_name: String,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub mail: Option<String>,
    pub mail_nickname: String,
    pub account_enabled: bool,
    pub guest: bool,
    pub created: NaiveDateTime,
    pub department: Option<&'static str>,
    pub job_title: Option<String>,
    pub office_location: Option<&'static str>,
    pub company_name: Option<&'static str>,
    pub employee_id: Option<String>,
    pub mobile_phone: Option<String>,
    pub business_phones: Vec<String>,
    pub city: Option<&'static str>,
    pub state: Option<&'static str>,
    pub country: Option<&'static str>,
    pub usage_location: Option<&'static str>,
    pub on_premises_sync_enabled: Option<bool>,
    pub last_password_change: NaiveDateTime,
    pub licenses: Vec<License>,
    pub preferred_language: Option<&'static str>,
    pub directory: Directory,
    /// As of the record's epoch (see `Tenant::manager_at`).
    pub manager: Option<Manager>,
    pub sign_ins: Option<SignIns>,
}

fn days_before(d: NaiveDate, n: u64) -> NaiveDate {
    d.checked_sub_days(Days::new(n)).unwrap_or(NaiveDate::MIN)
}

pub(crate) fn iso_datetime(dt: &NaiveDateTime) -> String {
    dt.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn date_cell(d: Option<NaiveDate>) -> String {
    d.map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn bool_cell(b: bool) -> String {
    if b { "True" } else { "False" }.to_string()
}

fn yes_no(b: bool) -> String {
    if b { "Yes" } else { "No" }.to_string()
}

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Serialising strings, numbers and vectors into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

impl UserRec {
    /// Every served property as a JSON map (USER_SELECT, the default set and extras).
    pub fn to_map(&self) -> Map<String, Value> {
        let mut map = Map::new();
        let mut buf = Vec::new();
        for p in USER_SELECT
            .iter()
            .chain(DEFAULT_USER_PROPERTIES)
            .chain(EXTRA_PROPERTIES)
        {
            buf.clear();
            self.write_property(p, &mut buf);
            let v = serde_json::from_slice(&buf).unwrap_or(Value::Null);
            map.insert((*p).to_string(), v);
        }
        map
    }

    fn on_prem(&self) -> Option<&super::directory::OnPrem> {
        self.directory.on_prem.as_ref()
    }

    /// Writes the JSON value of `prop` (a canonical name from [`property_kind`]).
    pub fn write_property(&self, prop: &str, out: &mut Vec<u8>) {
        match prop {
            "id" => write_json(out, &self.id),
            "userPrincipalName" => write_json(out, &self.upn),
            "displayName" => write_json(out, &self.display_name),
            "givenName" => write_json(out, &self.given_name),
            "surname" => write_json(out, &self.surname),
            "mail" => write_json(out, &self.mail),
            "mailNickname" => write_json(out, &self.mail_nickname),
            "accountEnabled" => write_json(out, &self.account_enabled),
            "userType" => write_json(out, if self.guest { "Guest" } else { "Member" }),
            "createdDateTime" => write_json(out, &iso_datetime(&self.created)),
            "department" => write_json(out, &self.department),
            "jobTitle" => write_json(out, &self.job_title),
            "officeLocation" => write_json(out, &self.office_location),
            "companyName" => write_json(out, &self.company_name),
            "employeeId" => write_json(out, &self.employee_id),
            "mobilePhone" => write_json(out, &self.mobile_phone),
            "businessPhones" => write_json(out, &self.business_phones),
            "city" => write_json(out, &self.city),
            "state" => write_json(out, &self.state),
            "country" => write_json(out, &self.country),
            "usageLocation" => write_json(out, &self.usage_location),
            "onPremisesSyncEnabled" => write_json(out, &self.on_premises_sync_enabled),
            "lastPasswordChangeDateTime" => {
                write_json(out, &iso_datetime(&self.last_password_change))
            }
            "preferredLanguage" => write_json(out, &self.preferred_language),
            "assignedLicenses" => {
                out.push(b'[');
                for (n, l) in self.licenses.iter().enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"{\"disabledPlans\":[");
                    if l.teams_disabled {
                        write_json(out, skus::TEAMS1_PLAN_ID);
                    }
                    out.extend_from_slice(b"],\"skuId\":");
                    write_json(out, SKUS[l.sku].sku_id);
                    out.push(b'}');
                }
                out.push(b']');
            }
            "imAddresses" => out.extend_from_slice(b"[]"),
            "signInActivity" => match &self.sign_ins {
                None => out.extend_from_slice(b"null"),
                Some(s) => {
                    // Dates never set come as Graph writes them: the year 1.
                    let never = "0001-01-01T00:00:00Z".to_string();
                    let ts =
                        |d: &Option<NaiveDateTime>| d.map_or(never.clone(), |d| iso_datetime(&d));
                    let rid = |d: &Option<NaiveDateTime>| {
                        if d.is_some() {
                            s.request_id.clone()
                        } else {
                            String::new()
                        }
                    };
                    let v = serde_json::json!({
                        "lastSignInDateTime": ts(&s.last),
                        "lastSignInRequestId": rid(&s.last),
                        "lastNonInteractiveSignInDateTime": ts(&s.last_non_interactive),
                        "lastNonInteractiveSignInRequestId": rid(&s.last_non_interactive),
                        "lastSuccessfulSignInDateTime": ts(&s.last_successful),
                        "lastSuccessfulSignInRequestId": rid(&s.last_successful),
                    });
                    write_json(out, &v);
                }
            },
            "proxyAddresses" => write_json(out, &self.directory.proxy_addresses),
            "otherMails" => write_json(out, &self.directory.other_mails),
            "employeeType" => write_json(out, &self.directory.employee_type),
            "employeeHireDate" => write_json(
                out,
                &self.directory.employee_hire_date.map(|d| iso_datetime(&d)),
            ),
            "externalUserState" => write_json(out, &self.directory.external_user_state),
            "creationType" => write_json(out, &self.directory.creation_type),
            "onPremisesSamAccountName" => {
                write_json(out, &self.on_prem().map(|p| &p.sam_account_name))
            }
            "onPremisesDistinguishedName" => {
                write_json(out, &self.on_prem().map(|p| &p.distinguished_name))
            }
            "onPremisesImmutableId" => write_json(out, &self.on_prem().map(|p| &p.immutable_id)),
            "onPremisesDomainName" => write_json(out, &self.on_prem().map(|p| p.domain_name)),
            "onPremisesLastSyncDateTime" => {
                write_json(out, &self.on_prem().map(|p| iso_datetime(&p.last_sync)))
            }
            _ => out.extend_from_slice(b"null"),
        }
    }
}

/// Who a report row is about.
struct Subject {
    /// Seeds the row's randomness; distinct per kind of subject.
    key: u64,
    kind: SubjectKind,
    upn: String,
    display: String,
    id: String,
    created: NaiveDate,
    licenses: Vec<License>,
    /// Days before the report refresh date of the latest activity; `None` = never active.
    recency: Option<u64>,
    deleted: Option<NaiveDate>,
    guest: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SubjectKind {
    User,
    Deleted,
    ReportOnly,
    Unknown,
}

const SALT_USER: u64 = salt("user");
const SALT_GUEST: u64 = salt("guest");
const SALT_LICENSES: u64 = salt("licenses");
const SALT_ACTIVITY: u64 = salt("activity");
const SALT_EXTRAS: u64 = salt("report-extras");
const SALT_DELETED: u64 = salt("deleted-user");
const SALT_REPORT_ONLY: u64 = salt("report-only-user");
const SALT_ID: u64 = salt("id");
const SALT_SKEW: u64 = salt("skewed-upn");

/// The top bit of [`Tenant::seed`]: UPNs follow the skewed profile.
pub const SKEWED_UPNS_BIT: u64 = 1 << 63;

/// Given names of the skewed profile's big first letter.
const SKEWED_GIVEN_NAMES: &[&str] = &["Megan", "Miriam", "Mateo", "Maria", "Mohammed", "Mei"];

/// What [`Tenant::names`] drew for one user.
#[derive(Clone, Copy)]
struct Names {
    guest: bool,
    given: &'static str,
    sur: &'static str,
    room: bool,
    nasty: bool,
    nasty_name: &'static str,
    guest_domain: &'static str,
    /// Skewed profile: a digit, `_` or `'` put before the local part.
    lead: &'static str,
}

impl Tenant {
    /// The reports' "Report Refresh Date": data lags two days behind today.
    pub fn refresh_date(&self) -> NaiveDate {
        days_before(self.today, 2)
    }

    /// User `i` with every property of `USER_SELECT`, the default set and a few extras.
    pub fn user(&self, i: u64) -> Map<String, Value> {
        self.record(i).to_map()
    }

    /// The GUID of user `i`.
    pub fn user_id(&self, i: u64) -> String {
        let mut r = Rng::new(self.seed, i, SALT_ID);
        format_guid(r.next_u64(), r.next_u64())
    }

    pub(crate) fn is_guest(&self, i: u64) -> bool {
        Rng::new(self.seed, i, SALT_GUEST).chance(0.06)
    }

    /// Licences of user `i`: a stream of its own so `/subscribedSkus` can count consumed
    /// units without generating whole users.
    pub(crate) fn licenses(&self, i: u64, guest: bool) -> Vec<License> {
        let mut r = Rng::new(self.seed, i, SALT_LICENSES);
        let mut v = Vec::new();
        let lic = |sku| License {
            sku,
            teams_disabled: false,
        };
        if guest {
            if r.chance(0.1) {
                v.push(lic(skus::POWER_BI_STANDARD));
            }
            return v;
        }
        let base = r.unit();
        let teams_off = r.chance(0.1);
        let base = match base {
            b if b < 0.45 => Some(skus::SPE_E3),
            b if b < 0.60 => Some(skus::SPE_E5),
            b if b < 0.80 => Some(skus::ENTERPRISEPACK),
            b if b < 0.88 => Some(skus::EXCHANGESTANDARD),
            _ => None,
        };
        if let Some(sku) = base {
            v.push(License {
                sku,
                teams_disabled: sku == skus::SPE_E3 && teams_off,
            });
        }
        if r.chance(0.30) {
            v.push(lic(skus::POWER_BI_STANDARD));
        }
        if r.chance(0.15) {
            v.push(lic(skus::FLOW_FREE));
        }
        if r.chance(0.05) {
            v.push(lic(skus::TEAMS_EXPLORATORY));
        }
        if r.chance(0.03) {
            v.push(lic(skus::EMSPREMIUM));
        }
        v
    }

    /// Units consumed per entry of [`SKUS`], counted over every user (one pass, no storage).
    pub fn consumed_units(&self) -> Vec<u64> {
        let mut counts = vec![0u64; SKUS.len()];
        for i in 0..self.users {
            for l in self.licenses(i, self.is_guest(i)) {
                counts[l.sku] += 1;
            }
        }
        counts
    }

    /// The draws that name user `i`, in the order `record` has always made them (the
    /// stream then goes on with the rest of the record).
    fn names(&self, i: u64) -> (Rng, Names) {
        let mut r = Rng::new(self.seed, i, SALT_USER);
        let guest = self.is_guest(i);
        let mut given = *r.pick(names::GIVEN_NAMES);
        let sur = *r.pick(names::SURNAMES);
        let room = !guest && r.chance(0.02);
        let nasty = r.chance(0.08);
        let nasty_name = *r.pick(names::NASTY_DISPLAY_NAMES);
        let guest_domain = *r.pick(names::GUEST_DOMAINS);
        let mut lead = "";
        if self.skewed_upns() {
            let mut k = Rng::new(self.seed, i, SALT_SKEW);
            match k.unit() {
                u if u < 0.70 => given = *k.pick(SKEWED_GIVEN_NAMES),
                u if u < 0.75 => {
                    lead = *k.pick(&["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"])
                }
                u if u < 0.77 => lead = "_",
                u if u < 0.79 => lead = "'",
                _ => {}
            }
        }
        let n = Names {
            guest,
            given,
            sur,
            room,
            nasty,
            nasty_name,
            guest_domain,
            lead,
        };
        (r, n)
    }

    /// The local part of the UPN before any guest suffix (mail and mailNickname derive
    /// from it too).
    fn local_part(&self, i: u64, n: &Names) -> String {
        let lead = n.lead;
        if n.guest {
            format!("{lead}{}.{}{i}", slug(n.given), slug(n.sur))
        } else if n.room {
            format!("{lead}Conf.Room.{}{i}", n.sur)
        } else {
            format!("{lead}{}.{}{i}", n.given, n.sur)
        }
    }

    /// The UPN of user `i`, exactly as [`Tenant::record`] has it, without the rest of the
    /// record: what `$filter` on userPrincipalName compares when the key index can't decide.
    pub fn upn_at(&self, i: u64) -> String {
        let (_, n) = self.names(i);
        let local = self.local_part(i, &n);
        if n.guest {
            format!("{local}_{}#EXT#@{TENANT_DOMAIN}", n.guest_domain)
        } else {
            format!("{local}@{TENANT_DOMAIN}")
        }
    }

    /// Whether UPNs follow the skewed profile (see [`Tenant::with_skewed_upns`]).
    pub fn skewed_upns(&self) -> bool {
        self.seed & SKEWED_UPNS_BIT != 0
    }

    /// This tenant with skewed UPN local parts, for tests of partition balance: about 70%
    /// start with an M name (mixed case, as usual), 5% with a digit, 2% with `_` and 2% with
    /// `'`; the rest are as usual. The flag lives in the top bit of `seed` so that `Tenant`
    /// keeps its four fields (callers build it literally); the whole tenant then differs from
    /// the unskewed one of the same seed, which is left byte for byte as it was.
    pub fn with_skewed_upns(self) -> Tenant {
        Tenant {
            seed: self.seed | SKEWED_UPNS_BIT,
            ..self
        }
    }

    /// User `i` as generated (epoch 0): the base record, its directory attributes, manager
    /// and sign-in activity.
    pub(crate) fn record(&self, i: u64) -> UserRec {
        let mut u = self.record_base(i);
        u.directory = self.directory(i, &u);
        u.manager = self.manager_at(i, 0);
        u.sign_ins = self.sign_ins(i, &u);
        u
    }

    /// The base record of user `i` (what the other parts derive from).
    pub(crate) fn record_base(&self, i: u64) -> UserRec {
        let (mut r, n) = self.names(i);
        let Names {
            guest,
            given,
            sur,
            room,
            nasty,
            nasty_name,
            guest_domain,
            ..
        } = n;
        let has_mail = r.chance(0.95);
        let guest_mail_display = r.chance(0.3);

        let local = self.local_part(i, &n);
        let (upn, mail, nickname) = if guest {
            (
                format!("{local}_{guest_domain}#EXT#@{TENANT_DOMAIN}"),
                Some(format!("{local}@{guest_domain}")),
                format!("{local}_{guest_domain}#EXT#"),
            )
        } else {
            // Mixed case in /users; the reports sometimes shout or whisper it.
            let mail = has_mail.then(|| format!("{local}@{MAIL_DOMAIN}"));
            (format!("{local}@{TENANT_DOMAIN}"), mail, local)
        };
        let display_name = if room {
            format!("Conf Room {sur}")
        } else if nasty {
            nasty_name.to_string()
        } else if guest && guest_mail_display {
            mail.clone().unwrap_or_default()
        } else {
            format!("{given} {sur}")
        };
        let given_name = (!room && r.chance(0.95)).then(|| given.to_string());
        let surname = (!room && r.chance(0.95)).then(|| sur.to_string());
        let job_title = match r.unit() {
            _ if room => None,
            u if u < 0.012 => Some(names::long_job_title(i as usize)),
            u if u < 0.85 => Some(r.pick(names::JOB_TITLES).to_string()),
            _ => None,
        };
        let department = (r.chance(0.85)).then(|| *r.pick(names::DEPARTMENTS));
        let office_location = (r.chance(0.6)).then(|| *r.pick(names::OFFICES));
        let company_name = (!guest && r.chance(0.7)).then(|| *r.pick(names::COMPANIES));
        let employee_id =
            (!guest && !room && r.chance(0.7)).then(|| format!("E{:06}", i % 1_000_000));
        let place = *r.pick(names::PLACES);
        let has_place = r.chance(0.85);
        let phone_suffix = r.range(1000, 9999);
        let mobile_phone = r
            .chance(0.4)
            .then(|| format!("{}{}", place.4, phone_suffix));
        let business_phones = if r.chance(0.6) {
            vec![format!("{}{}", place.4, (phone_suffix + 17) % 10_000)]
        } else {
            Vec::new()
        };
        let usage_location = (r.chance(if guest { 0.5 } else { 0.95 })).then_some(place.3);
        let on_premises_sync_enabled = match r.unit() {
            _ if guest => None,
            u if u < 0.5 => Some(true),
            u if u < 0.6 => Some(false),
            _ => None,
        };
        let preferred_language = match r.unit() {
            u if u < 0.5 => Some("en-US"),
            u if u < 0.6 => Some(*r.pick(&["de-DE", "nl-NL", "ja-JP", "fr-FR", "ar-AE"])),
            _ => None,
        };
        let account_enabled = !r.chance(0.07);

        // Created: spread over ten years, some in the last 30 days.
        let created_days_ago = if r.chance(0.05) {
            r.range(1, 29)
        } else {
            r.range(30, 3650)
        };
        let created = days_before(self.today, created_days_ago)
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            + chrono::Duration::seconds(r.below(86_400) as i64);
        let pwd_days_ago = if r.chance(0.15) {
            r.range(0, created_days_ago.min(29))
        } else {
            r.range(0, created_days_ago)
        };
        let pwd = days_before(self.today, pwd_days_ago)
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            + chrono::Duration::seconds(r.below(86_400) as i64);
        let last_password_change = pwd.max(created);

        UserRec {
            id: self.user_id(i),
            upn,
            display_name,
            given_name,
            surname,
            mail,
            mail_nickname: nickname,
            account_enabled,
            guest,
            created,
            department,
            job_title,
            office_location,
            company_name,
            employee_id,
            mobile_phone,
            business_phones,
            city: has_place.then_some(place.0),
            state: if has_place { place.1 } else { None },
            country: has_place.then_some(place.2),
            usage_location,
            on_premises_sync_enabled,
            last_password_change,
            licenses: self.licenses(i, guest),
            preferred_language,
            directory: Directory::default(),
            manager: None,
            sign_ins: None,
        }
    }

    /// The CSV header the download host serves for `r`: the documented columns, in order.
    pub fn report_header(&self, r: Report) -> Vec<String> {
        r.documented_columns()
            .iter()
            .map(|c| (*c).to_string())
            .collect()
    }

    /// The rows served for `r` requested with `period='D30'` (the connector's default), as
    /// exact cell strings. See [`Tenant::report_rows_for`] for other periods.
    pub fn report_rows(&self, r: Report) -> impl Iterator<Item = Vec<String>> + Send + use<> {
        self.report_rows_for(r, 30)
    }

    /// The rows served for `r` requested with `period='D{period_days}'`. Only the
    /// "Report Period" column and the activity counts depend on the period; activations,
    /// which take no period, ignore it. Generated lazily, user by user.
    pub fn report_rows_for(
        &self,
        r: Report,
        period_days: u32,
    ) -> impl Iterator<Item = Vec<String>> + Send + use<> {
        let t = *self;
        (0..t.users).flat_map(move |i| t.rows_at(r, period_days, i))
    }

    /// The rows emitted at user slot `i`: the user's own rows (if present in this report)
    /// followed by any deleted, report-only or `(Unknown)` rows placed at this slot.
    fn rows_at(&self, r: Report, period: u32, i: u64) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        let user = self.user_subject(i);
        self.subject_rows(r, period, &user, &mut out);

        let mut x = Rng::new(self.seed, i, SALT_EXTRAS);
        let roll = x.next_u64();
        if roll.is_multiple_of(97) || (self.users >= 2 && i == self.users / 2) {
            self.subject_rows(r, period, &self.deleted_subject(i), &mut out);
        }
        if roll % 211 == 5 || (self.users >= 4 && i == self.users / 4) {
            self.subject_rows(r, period, &self.report_only_subject(i), &mut out);
        }
        if self.users >= 3
            && (i == self.users / 3 || i == 2 * self.users / 3)
            && r != Report::OneDriveUsageAccountDetail
        {
            self.subject_rows(r, period, &self.unknown_subject(i), &mut out);
        }
        out
    }

    fn user_subject(&self, i: u64) -> Subject {
        let u = self.record(i);
        let mut a = Rng::new(self.seed, i, SALT_ACTIVITY);
        let never = a.chance(if u.account_enabled { 0.10 } else { 0.5 });
        let recency = match a.unit() {
            _ if never => None,
            x if x < 0.55 && u.account_enabled => Some(a.range(0, 6)),
            x if x < 0.70 && u.account_enabled => Some(a.range(7, 29)),
            _ => Some(a.range(30, 200)),
        };
        Subject {
            key: i,
            kind: SubjectKind::User,
            upn: u.upn,
            display: u.display_name,
            id: u.id,
            created: u.created.date(),
            licenses: u.licenses,
            recency,
            deleted: None,
            guest: u.guest,
        }
    }

    fn deleted_subject(&self, i: u64) -> Subject {
        let mut r = Rng::new(self.seed, i, SALT_DELETED);
        let given = *r.pick(names::GIVEN_NAMES);
        let sur = *r.pick(names::SURNAMES);
        let deleted_days = r.range(1, 29);
        let deleted = days_before(self.refresh_date(), deleted_days);
        Subject {
            key: mix(i ^ SALT_DELETED),
            kind: SubjectKind::Deleted,
            upn: format!("former.{}.{}{}@{TENANT_DOMAIN}", slug(given), slug(sur), i),
            display: format!("{given} {sur} (left)"),
            id: r.guid(),
            created: days_before(deleted, r.range(60, 2000)),
            licenses: vec![License {
                sku: skus::SPE_E3,
                teams_disabled: false,
            }],
            recency: Some(deleted_days + r.range(0, 20)),
            deleted: Some(deleted),
            guest: false,
        }
    }

    fn report_only_subject(&self, i: u64) -> Subject {
        let mut r = Rng::new(self.seed, i, SALT_REPORT_ONLY);
        let display = if r.chance(0.5) {
            format!("Helpdesk, Tier {}", i % 3 + 1)
        } else {
            format!("Shared Mailbox {i}")
        };
        Subject {
            key: mix(i ^ SALT_REPORT_ONLY),
            kind: SubjectKind::ReportOnly,
            upn: format!("shared.mailbox{i}@{TENANT_DOMAIN}"),
            display,
            id: r.guid(),
            created: days_before(self.today, r.range(30, 1500)),
            licenses: Vec::new(),
            recency: Some(r.range(0, 60)),
            deleted: None,
            guest: false,
        }
    }

    fn unknown_subject(&self, i: u64) -> Subject {
        Subject {
            key: mix(i ^ salt("unknown")),
            kind: SubjectKind::Unknown,
            upn: "(Unknown)".to_string(),
            display: String::new(),
            id: "00000000-0000-0000-0000-000000000000".to_string(),
            created: self.refresh_date(),
            licenses: Vec::new(),
            recency: Some(1),
            deleted: None,
            guest: false,
        }
    }

    /// Appends the rows of `s` in report `r` (none if `s` is absent from this report).
    fn subject_rows(&self, r: Report, period: u32, s: &Subject, out: &mut Vec<Vec<String>>) {
        let mut g = Rng::new(self.seed, s.key, salt(r.stream()));
        // Presence: ~90% of users per report; guests rarely have mailboxes or OneDrive.
        let p_present = match (r, s.guest) {
            (Report::MailboxUsageDetail | Report::OneDriveUsageAccountDetail, true) => 0.3,
            _ => 0.9,
        };
        let present = g.chance(p_present);
        if s.kind == SubjectKind::User && !present {
            return;
        }
        let cells = Cells::new(self, s, &mut g);
        let refresh = self.refresh_date();
        let ctx = RowCtx {
            refresh,
            period,
            s,
            cells,
        };
        match r {
            Report::Office365ActiveUserDetail => out.push(ctx.active_user(&mut g)),
            Report::Office365ActivationsUserDetail => ctx.activations(&mut g, out),
            Report::M365AppUserDetail => out.push(ctx.m365_app(&mut g)),
            Report::MailboxUsageDetail => out.push(ctx.mailbox(&mut g)),
            Report::EmailActivityUserDetail => out.push(ctx.email(&mut g)),
            Report::OneDriveUsageAccountDetail => out.push(ctx.onedrive(&mut g)),
            Report::SharePointActivityUserDetail => out.push(ctx.sharepoint(&mut g)),
            Report::TeamsUserActivityUserDetail => out.push(ctx.teams(&mut g)),
        }
    }
}

/// The identity cells of a row, concealed or not.
struct Cells {
    upn: String,
    display: String,
    user_id: String,
    site_url: String,
    assigned_products: String,
}

impl Cells {
    fn new(t: &Tenant, s: &Subject, g: &mut Rng) -> Cells {
        let case = g.unit();
        let site_url = format!(
            "https://contoso-my.sharepoint.com/personal/{}",
            s.upn
                .to_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect::<String>()
        );
        let assigned_products = s
            .licenses
            .iter()
            .map(|l| SKUS[l.sku].product_name)
            .collect::<Vec<_>>()
            .join("+");
        if s.kind == SubjectKind::Unknown {
            return Cells {
                upn: s.upn.clone(),
                display: String::new(),
                user_id: s.id.clone(),
                site_url: String::new(),
                assigned_products,
            };
        }
        if t.concealed {
            return Cells {
                upn: conceal(&s.upn.to_lowercase()),
                display: conceal(&s.display),
                user_id: conceal(&s.id),
                site_url: conceal(&site_url),
                assigned_products,
            };
        }
        let upn = match case {
            c if c < 0.10 => s.upn.to_uppercase(),
            c if c < 0.20 => s.upn.to_lowercase(),
            _ => s.upn.clone(),
        };
        Cells {
            upn,
            display: s.display.clone(),
            user_id: s.id.clone(),
            site_url,
            assigned_products,
        }
    }
}

struct RowCtx<'a> {
    refresh: NaiveDate,
    period: u32,
    s: &'a Subject,
    cells: Cells,
}

impl RowCtx<'_> {
    /// A last-activity date near the subject's recency, or empty when the service is unused.
    fn activity(&self, g: &mut Rng, p_use: f64) -> Option<NaiveDate> {
        let used = g.chance(p_use);
        let jitter = g.below(4);
        let rec = self.s.recency?;
        used.then(|| days_before(self.refresh, rec + jitter))
    }

    fn in_period(&self, d: Option<NaiveDate>) -> bool {
        d.is_some_and(|d| d > days_before(self.refresh, self.period as u64))
    }

    /// A count that is zero unless the activity date falls inside the report period.
    fn count(&self, g: &mut Rng, d: Option<NaiveDate>, max: u64) -> String {
        let n = g.range(1, max.max(1));
        if self.in_period(d) {
            n.to_string()
        } else {
            "0".to_string()
        }
    }

    fn assign_date(&self, g: &mut Rng) -> Option<NaiveDate> {
        let d = self
            .s
            .created
            .checked_add_days(Days::new(g.below(20)))
            .unwrap_or(self.s.created);
        Some(d.min(self.refresh))
    }

    fn has(&self, f: impl Fn(&License) -> bool) -> bool {
        self.s.licenses.iter().any(f)
    }

    fn deleted_cells(&self) -> (String, String) {
        (
            bool_cell(self.s.deleted.is_some()),
            date_cell(self.s.deleted),
        )
    }

    fn period_cell(&self) -> String {
        self.period.to_string()
    }

    fn active_user(&self, g: &mut Rng) -> Vec<String> {
        let exchange = self.has(|l| skus::has_exchange(l.sku));
        let suite = self.has(|l| skus::is_suite(l.sku));
        let teams = self.has(|l| {
            (skus::is_suite(l.sku) && !l.teams_disabled) || l.sku == skus::TEAMS_EXPLORATORY
        });
        let has = [exchange, suite, suite, suite, suite, teams];
        let use_p = [0.9, 0.6, 0.7, 0.05, 0.1, 0.85];
        let mut last = Vec::with_capacity(6);
        for (h, p) in has.iter().zip(use_p) {
            let d = self.activity(g, p);
            last.push(if *h { d } else { None });
        }
        let mut assigned = Vec::with_capacity(6);
        for h in has {
            let d = self.assign_date(g);
            assigned.push(if h { d } else { None });
        }
        let (is_del, del_date) = self.deleted_cells();
        let mut row = vec![
            date_cell(Some(self.refresh)),
            self.cells.upn.clone(),
            self.cells.display.clone(),
            is_del,
            del_date,
        ];
        row.extend(has.iter().map(|h| bool_cell(*h)));
        row.extend(last.into_iter().map(date_cell));
        row.extend(assigned.into_iter().map(date_cell));
        row.push(self.cells.assigned_products.clone());
        row
    }

    fn activations(&self, g: &mut Rng, out: &mut Vec<Vec<String>>) {
        let first = if self.has(|l| skus::is_suite(l.sku)) {
            "MICROSOFT 365 APPS FOR ENTERPRISE"
        } else {
            "MICROSOFT 365 APPS FOR BUSINESS"
        };
        let second = g.chance(0.2).then(|| *g.pick(&["PROJECT", "VISIO"]));
        for product in std::iter::once(first).chain(second) {
            let activated = self.activity(g, 0.85);
            let n = |g: &mut Rng, p: f64| {
                if activated.is_some() && g.chance(p) {
                    g.range(1, 5)
                } else {
                    0
                }
            };
            let windows = n(g, 0.8);
            let mac = n(g, 0.2);
            let w10m = 0;
            let ios = n(g, 0.4);
            let android = n(g, 0.3);
            let shared = activated.is_some() && g.chance(0.05);
            out.push(vec![
                date_cell(Some(self.refresh)),
                self.cells.upn.clone(),
                self.cells.display.clone(),
                product.to_string(),
                date_cell(activated),
                windows.to_string(),
                mac.to_string(),
                w10m.to_string(),
                ios.to_string(),
                android.to_string(),
                bool_cell(shared),
            ]);
        }
    }

    fn m365_app(&self, g: &mut Rng) -> Vec<String> {
        let activation = self.activity(g, 0.8);
        let activity = self.activity(g, 0.9);
        let active = self.in_period(activity);
        // platform x app (Outlook, Word, Excel, PowerPoint, OneNote, Teams)
        let mut grid = [[false; 6]; 4];
        let platform_p = [0.8, 0.15, 0.5, 0.6];
        for (p, row) in grid.iter_mut().enumerate() {
            let on = active && g.chance(platform_p[p]);
            for cell in row.iter_mut() {
                *cell = on && g.chance(0.6);
            }
        }
        let mut row = vec![
            date_cell(Some(self.refresh)),
            self.cells.upn.clone(),
            date_cell(activation),
            date_cell(activity),
            self.period_cell(),
        ];
        row.extend(grid.iter().map(|apps| yes_no(apps.iter().any(|a| *a))));
        row.extend((0..6).map(|a| yes_no(grid.iter().any(|p| p[a]))));
        for platform in &grid {
            row.extend(platform.iter().map(|a| yes_no(*a)));
        }
        row
    }

    fn mailbox(&self, g: &mut Rng) -> Vec<String> {
        let plan1 = !self.has(|l| skus::is_suite(l.sku));
        let (warn, send, send_receive): (u64, u64, u64) = if plan1 {
            (52_613_349_376, 53_150_220_288, 53_687_091_200)
        } else {
            (105_226_698_752, 106_300_440_576, 107_374_182_400)
        };
        let last = self.activity(g, 0.95);
        let items = g.range(0, 250_000);
        let used = items * g.range(20_000, 90_000);
        let deleted_items = g.range(0, items / 10 + 1);
        let (is_del, del_date) = self.deleted_cells();
        vec![
            date_cell(Some(self.refresh)),
            self.cells.upn.clone(),
            self.cells.display.clone(),
            is_del,
            del_date,
            date_cell(Some(self.s.created)),
            date_cell(last),
            items.to_string(),
            used.min(send_receive).to_string(),
            warn.to_string(),
            send.to_string(),
            send_receive.to_string(),
            deleted_items.to_string(),
            (deleted_items * g.range(10_000, 60_000)).to_string(),
            "32212254720".to_string(),
            bool_cell(!plan1 && g.chance(0.2)),
            self.period_cell(),
        ]
    }

    fn email(&self, g: &mut Rng) -> Vec<String> {
        let last = self.activity(g, 0.9);
        let (is_del, del_date) = self.deleted_cells();
        vec![
            date_cell(Some(self.refresh)),
            self.cells.upn.clone(),
            self.cells.display.clone(),
            is_del,
            del_date,
            date_cell(last),
            self.count(g, last, 400),
            self.count(g, last, 3000),
            self.count(g, last, 2500),
            self.count(g, last, 40),
            self.count(g, last, 120),
            self.cells.assigned_products.clone(),
            self.period_cell(),
        ]
    }

    fn onedrive(&self, g: &mut Rng) -> Vec<String> {
        let last = self.activity(g, 0.7);
        let files = g.range(0, 40_000);
        let active_files = if self.in_period(last) {
            g.range(0, files.min(500))
        } else {
            0
        };
        let owner_display = self.cells.display.clone();
        vec![
            date_cell(Some(self.refresh)),
            self.cells.site_url.clone(),
            owner_display,
            bool_cell(self.s.deleted.is_some()),
            date_cell(last),
            files.to_string(),
            active_files.to_string(),
            (files * g.range(50_000, 2_000_000)).to_string(),
            "1099511627776".to_string(),
            self.cells.upn.clone(),
            self.period_cell(),
        ]
    }

    fn sharepoint(&self, g: &mut Rng) -> Vec<String> {
        let last = self.activity(g, 0.75);
        let (is_del, del_date) = self.deleted_cells();
        vec![
            date_cell(Some(self.refresh)),
            self.cells.upn.clone(),
            is_del,
            del_date,
            date_cell(last),
            self.count(g, last, 300),
            self.count(g, last, 100),
            self.count(g, last, 30),
            self.count(g, last, 10),
            self.count(g, last, 200),
            self.cells.assigned_products.clone(),
            self.period_cell(),
        ]
    }

    fn teams(&self, g: &mut Rng) -> Vec<String> {
        let last = self.activity(g, 0.85);
        let shared_channels = match g.unit() {
            u if u < 0.85 => "",
            u if u < 0.95 => "Fabrikam",
            _ => "Fabrikam,Adatum Corporation",
        };
        let licensed = self.has(|l| {
            (skus::is_suite(l.sku) && !l.teams_disabled) || l.sku == skus::TEAMS_EXPLORATORY
        });
        let (is_del, del_date) = self.deleted_cells();
        let mut row = vec![
            date_cell(Some(self.refresh)),
            TENANT_DISPLAY_NAME.to_string(),
            shared_channels.to_string(),
            self.cells.user_id.clone(),
            self.cells.upn.clone(),
            date_cell(last),
            is_del,
            del_date,
            self.cells.assigned_products.clone(),
        ];
        for max in [500, 1500, 60, 80, 40, 120, 5] {
            row.push(self.count(g, last, max));
        }
        for max in [20, 80, 10, 30, 5, 20, 10, 40] {
            row.push(self.count(g, last, max));
        }
        let active = self.in_period(last);
        let secs: Vec<u64> = [36_000u64, 7_200, 5_400]
            .iter()
            .map(|m| if active { g.range(0, *m) } else { 0 })
            .collect();
        row.extend(
            secs.iter()
                .map(|s| format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)),
        );
        row.extend(secs.iter().map(|s| s.to_string()));
        row.push(yes_no(active && g.chance(0.1)));
        row.push(bool_cell(licensed));
        row.push(self.period_cell());
        row
    }
}
