//! The streams a run extracts, named once so the extract stage, the simulator, the manifest
//! and the SQL models all agree on the same names (DESIGN.md "Streams").

use std::fmt;

/// Properties requested with `$select` on `/users`: everything the mapping may use that
/// Directory.Read.All can read. `signInActivity` is not here: it needs AuditLog.Read.All and
/// Entra ID P1/P2, and Graph throttles listing it to 5 requests per 10 s, so it is its own
/// stream ([`SIGN_IN_SELECT`]). The manager is an `$expand` (`[pipeline] manager`).
pub const USER_SELECT: &[&str] = &[
    "id",
    "userPrincipalName",
    "displayName",
    "givenName",
    "surname",
    "mail",
    "accountEnabled",
    "userType",
    "createdDateTime",
    "department",
    "jobTitle",
    "officeLocation",
    "companyName",
    "employeeId",
    "mobilePhone",
    "businessPhones",
    "city",
    "country",
    "state",
    "usageLocation",
    "onPremisesSyncEnabled",
    "lastPasswordChangeDateTime",
    "assignedLicenses",
    "onPremisesSamAccountName",
    "onPremisesDistinguishedName",
    "onPremisesImmutableId",
    "onPremisesDomainName",
    "onPremisesLastSyncDateTime",
    "proxyAddresses",
    "otherMails",
    "employeeType",
    "employeeHireDate",
    "externalUserState",
    "creationType",
    "preferredLanguage",
];

/// The `$select` of the users delta walk, as stored next to a delta link: a link made for
/// another selection does not track the properties asked for now, so it is not used. With
/// `manager` it selects the `manager` relationship, whose changes come as `manager@delta`
/// (delta takes no `$expand`).
pub fn user_select(manager: bool) -> String {
    let mut s = USER_SELECT.join(",");
    if manager {
        s.push_str(",manager");
    }
    s
}

/// The largest page of a full `/users` walk: 999, or 100 with the manager expanded.
pub fn users_page_size(manager: bool) -> u32 {
    if manager {
        USERS_EXPANDED_PAGE_SIZE
    } else {
        USERS_PAGE_SIZE
    }
}

/// The first request of a full `/users` walk (without a filter): the selection, the
/// manager's id when `manager`, and `$top=999` (Graph serves 100 when expanding).
pub fn users_path(manager: bool) -> String {
    let mut p = format!("/users?$select={}", USER_SELECT.join(","));
    if manager {
        p.push_str("&$expand=");
        p.push_str(MANAGER_EXPAND);
    }
    p.push_str(&format!("&$top={USERS_PAGE_SIZE}"));
    p
}

/// One stream of a run: a paged Graph collection or a usage report. Its name is the raw
/// file name, the manifest key and the `_stream` lineage value; this is its one definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    Users,
    /// `signInActivity` of every user, when `[pipeline] sign_in_activity` reads it: optional,
    /// so it is not in [`Stream::all`] (a run without it is complete).
    SignIns,
    Organization,
    SubscribedSkus,
    Report(Report),
}

impl Stream {
    /// The paged JSON collections, in the order they are walked.
    pub const COLLECTIONS: [Stream; 3] =
        [Stream::Users, Stream::Organization, Stream::SubscribedSkus];

    /// Every stream of a run: the collections, then the reports.
    pub fn all() -> impl Iterator<Item = Stream> {
        Stream::COLLECTIONS
            .into_iter()
            .chain(Report::ALL.into_iter().map(Stream::Report))
    }

    pub const fn name(self) -> &'static str {
        match self {
            Stream::Users => "users",
            Stream::SignIns => "users_sign_in",
            Stream::Organization => "organization",
            Stream::SubscribedSkus => "subscribed_skus",
            Stream::Report(r) => r.stream(),
        }
    }

    /// The stream named `name`, if any (the optional ones too).
    pub fn from_name(name: &str) -> Option<Stream> {
        Stream::all()
            .chain([Stream::SignIns])
            .find(|s| s.name() == name)
    }

    /// What its records are, as the progress line and errors say it.
    pub fn what(self) -> &'static str {
        match self {
            Stream::Users => "users",
            Stream::SignIns => "sign-in activity",
            Stream::Organization => "the organization",
            Stream::SubscribedSkus => "subscribed licences",
            Stream::Report(_) => "report rows",
        }
    }

    /// The singular and plural of one record, for counts ("3 users", "1 row").
    pub fn record_words(self) -> (&'static str, &'static str) {
        match self {
            Stream::Users | Stream::SignIns => ("user", "users"),
            _ => ("row", "rows"),
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Largest page Graph serves for `/users` (graph-api.md §2).
pub const USERS_PAGE_SIZE: u32 = 999;

/// Largest page of `/users` with `$expand=manager`: Graph caps it at 100 whatever `$top`
/// says (graph-api.md §2, "Known issue"), so a manager walk makes 10× the pages.
pub const USERS_EXPANDED_PAGE_SIZE: u32 = 100;

/// `$expand` of a full users walk with `[pipeline] manager`: the manager's id only (its other
/// attributes come from the same run's users).
pub const MANAGER_EXPAND: &str = "manager($select=id)";

/// `$select` of the sign-in activity stream: the id joins it to the users, the UPN puts it
/// in a transform part.
pub const SIGN_IN_SELECT: &str = "id,userPrincipalName,signInActivity";

/// Largest page of `/users` with `signInActivity` (graph-api.md §2: 500 since 2025).
pub const SIGN_IN_PAGE_SIZE: u32 = 500;

/// One of the eight Microsoft 365 usage reports (CSV, `302` to a download host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Report {
    Office365ActiveUserDetail,
    Office365ActivationsUserDetail,
    M365AppUserDetail,
    MailboxUsageDetail,
    EmailActivityUserDetail,
    OneDriveUsageAccountDetail,
    SharePointActivityUserDetail,
    TeamsUserActivityUserDetail,
}

impl Report {
    /// Every report, in the order they are listed in DESIGN.md.
    pub const ALL: [Report; 8] = [
        Report::Office365ActiveUserDetail,
        Report::Office365ActivationsUserDetail,
        Report::M365AppUserDetail,
        Report::MailboxUsageDetail,
        Report::EmailActivityUserDetail,
        Report::OneDriveUsageAccountDetail,
        Report::SharePointActivityUserDetail,
        Report::TeamsUserActivityUserDetail,
    ];

    /// Stream name: the raw file name and the `_stream` lineage value.
    pub const fn stream(self) -> &'static str {
        match self {
            Report::Office365ActiveUserDetail => "office365_active_user_detail",
            Report::Office365ActivationsUserDetail => "office365_activations_user_detail",
            Report::M365AppUserDetail => "m365_app_user_detail",
            Report::MailboxUsageDetail => "mailbox_usage_detail",
            Report::EmailActivityUserDetail => "email_activity_user_detail",
            Report::OneDriveUsageAccountDetail => "onedrive_usage_account_detail",
            Report::SharePointActivityUserDetail => "sharepoint_activity_user_detail",
            Report::TeamsUserActivityUserDetail => "teams_user_activity_user_detail",
        }
    }

    /// The reportRoot function name in the Graph URL.
    pub fn function(self) -> &'static str {
        match self {
            Report::Office365ActiveUserDetail => "getOffice365ActiveUserDetail",
            Report::Office365ActivationsUserDetail => "getOffice365ActivationsUserDetail",
            Report::M365AppUserDetail => "getM365AppUserDetail",
            Report::MailboxUsageDetail => "getMailboxUsageDetail",
            Report::EmailActivityUserDetail => "getEmailActivityUserDetail",
            Report::OneDriveUsageAccountDetail => "getOneDriveUsageAccountDetail",
            Report::SharePointActivityUserDetail => "getSharePointActivityUserDetail",
            Report::TeamsUserActivityUserDetail => "getTeamsUserActivityUserDetail",
        }
    }

    /// Whether the function takes `(period='Dn')`; activations takes no parameter at all.
    pub fn takes_period(self) -> bool {
        !matches!(self, Report::Office365ActivationsUserDetail)
    }

    /// Path below `/v1.0` for the given period (`D7`, `D30`, `D90`, `D180`).
    pub fn path(self, period: &str) -> String {
        if self.takes_period() {
            format!("/reports/{}(period='{}')", self.function(), period)
        } else {
            format!("/reports/{}", self.function())
        }
    }

    /// The CSV column that names the user (OneDrive keys by owner, not column 2).
    pub fn user_column(self) -> &'static str {
        match self {
            Report::OneDriveUsageAccountDetail => "Owner Principal Name",
            _ => "User Principal Name",
        }
    }

    /// The columns that identify one row of the report: the user, and for activations the
    /// product too (that report has one row per user and product type).
    pub fn key_columns(self) -> &'static [&'static str] {
        match self {
            Report::Office365ActivationsUserDetail => &["User Principal Name", "Product Type"],
            Report::OneDriveUsageAccountDetail => &["Owner Principal Name"],
            _ => &["User Principal Name"],
        }
    }

    /// SQL for the key of one landed row, NULL when the row names nobody (an empty or
    /// `(Unknown)` user, graph-api.md §4): such rows are never taken for copies of each other.
    /// The one definition of "the same row" for counting copies and for dropping them.
    pub fn row_key_sql(self) -> String {
        let user = crate::sql::quote_ident(self.user_column());
        let cells: Vec<String> = self
            .key_columns()
            .iter()
            .map(|c| crate::sql::quote_ident(c))
            .collect();
        format!(
            "CASE WHEN trim(coalesce({user}, '')) IN ('', '(Unknown)') THEN NULL ELSE row({}) END",
            cells.join(", ")
        )
    }

    /// The cells the models compute with, typed once as the report lands
    /// (`land/report_typed.rs`): dates, counts and yes/no columns, by header name.
    pub fn typed_columns(self) -> &'static [(&'static str, Cell)] {
        match self {
            Report::EmailActivityUserDetail => &[
                ("Report Refresh Date", Cell::Date),
                ("Is Deleted", Cell::Bool),
                ("Deleted Date", Cell::Date),
                ("Last Activity Date", Cell::Date),
                ("Send Count", Cell::Int),
                ("Receive Count", Cell::Int),
                ("Read Count", Cell::Int),
                ("Meeting Created Count", Cell::Int),
                ("Meeting Interacted Count", Cell::Int),
                ("Report Period", Cell::Int),
            ],
            Report::M365AppUserDetail => &[
                ("Report Refresh Date", Cell::Date),
                ("Last Activation Date", Cell::Date),
                ("Last Activity Date", Cell::Date),
                ("Report Period", Cell::Int),
                ("Windows", Cell::Bool),
                ("Mac", Cell::Bool),
                ("Mobile", Cell::Bool),
                ("Web", Cell::Bool),
                ("Outlook", Cell::Bool),
                ("Word", Cell::Bool),
                ("Excel", Cell::Bool),
                ("PowerPoint", Cell::Bool),
                ("OneNote", Cell::Bool),
                ("Teams", Cell::Bool),
            ],
            Report::MailboxUsageDetail => &[
                ("Report Refresh Date", Cell::Date),
                ("Is Deleted", Cell::Bool),
                ("Deleted Date", Cell::Date),
                ("Created Date", Cell::Date),
                ("Last Activity Date", Cell::Date),
                ("Item Count", Cell::Int),
                ("Storage Used (Byte)", Cell::Int),
                ("Issue Warning Quota (Byte)", Cell::Int),
                ("Prohibit Send Quota (Byte)", Cell::Int),
                ("Prohibit Send/Receive Quota (Byte)", Cell::Int),
                ("Deleted Item Count", Cell::Int),
                ("Deleted Item Size (Byte)", Cell::Int),
                ("Deleted Item Quota (Byte)", Cell::Int),
                ("Has Archive", Cell::Bool),
                ("Report Period", Cell::Int),
            ],
            Report::Office365ActivationsUserDetail => &[
                ("Report Refresh Date", Cell::Date),
                ("Last Activated Date", Cell::Date),
                ("Windows", Cell::Int),
                ("Mac", Cell::Int),
                ("Windows 10 Mobile", Cell::Int),
                ("iOS", Cell::Int),
                ("Android", Cell::Int),
                ("Activated On Shared Computer", Cell::Bool),
            ],
            Report::Office365ActiveUserDetail => &[
                ("Report Refresh Date", Cell::Date),
                ("Is Deleted", Cell::Bool),
                ("Deleted Date", Cell::Date),
                ("Has Exchange License", Cell::Bool),
                ("Has OneDrive License", Cell::Bool),
                ("Has SharePoint License", Cell::Bool),
                ("Has Skype For Business License", Cell::Bool),
                ("Has Yammer License", Cell::Bool),
                ("Has Teams License", Cell::Bool),
                ("Exchange Last Activity Date", Cell::Date),
                ("OneDrive Last Activity Date", Cell::Date),
                ("SharePoint Last Activity Date", Cell::Date),
                ("Skype For Business Last Activity Date", Cell::Date),
                ("Yammer Last Activity Date", Cell::Date),
                ("Teams Last Activity Date", Cell::Date),
                ("Exchange License Assign Date", Cell::Date),
                ("OneDrive License Assign Date", Cell::Date),
                ("SharePoint License Assign Date", Cell::Date),
                ("Skype For Business License Assign Date", Cell::Date),
                ("Yammer License Assign Date", Cell::Date),
                ("Teams License Assign Date", Cell::Date),
            ],
            Report::OneDriveUsageAccountDetail => &[
                ("Report Refresh Date", Cell::Date),
                ("Is Deleted", Cell::Bool),
                ("Last Activity Date", Cell::Date),
                ("File Count", Cell::Int),
                ("Active File Count", Cell::Int),
                ("Storage Used (Byte)", Cell::Int),
                ("Storage Allocated (Byte)", Cell::Int),
                ("Report Period", Cell::Int),
            ],
            Report::SharePointActivityUserDetail => &[
                ("Report Refresh Date", Cell::Date),
                ("Is Deleted", Cell::Bool),
                ("Deleted Date", Cell::Date),
                ("Last Activity Date", Cell::Date),
                ("Viewed Or Edited File Count", Cell::Int),
                ("Synced File Count", Cell::Int),
                ("Shared Internally File Count", Cell::Int),
                ("Shared Externally File Count", Cell::Int),
                ("Visited Page Count", Cell::Int),
                ("Report Period", Cell::Int),
            ],
            Report::TeamsUserActivityUserDetail => &[
                ("Report Refresh Date", Cell::Date),
                ("Last Activity Date", Cell::Date),
                ("Is Deleted", Cell::Bool),
                ("Deleted Date", Cell::Date),
                ("Team Chat Message Count", Cell::Int),
                ("Private Chat Message Count", Cell::Int),
                ("Call Count", Cell::Int),
                ("Meeting Count", Cell::Int),
                ("Meetings Organized Count", Cell::Int),
                ("Meetings Attended Count", Cell::Int),
                ("Audio Duration In Seconds", Cell::Int),
                ("Video Duration In Seconds", Cell::Int),
                ("Screen Share Duration In Seconds", Cell::Int),
                ("Is Licensed", Cell::Bool),
                ("Report Period", Cell::Int),
            ],
        }
    }

    /// The documented CSV header, in order (graph-api.md §4). Real reports add columns
    /// without notice, so readers match by name and keep unknown ones.
    pub fn documented_columns(self) -> &'static [&'static str] {
        match self {
            Report::Office365ActiveUserDetail => &[
                "Report Refresh Date",
                "User Principal Name",
                "Display Name",
                "Is Deleted",
                "Deleted Date",
                "Has Exchange License",
                "Has OneDrive License",
                "Has SharePoint License",
                "Has Skype For Business License",
                "Has Yammer License",
                "Has Teams License",
                "Exchange Last Activity Date",
                "OneDrive Last Activity Date",
                "SharePoint Last Activity Date",
                "Skype For Business Last Activity Date",
                "Yammer Last Activity Date",
                "Teams Last Activity Date",
                "Exchange License Assign Date",
                "OneDrive License Assign Date",
                "SharePoint License Assign Date",
                "Skype For Business License Assign Date",
                "Yammer License Assign Date",
                "Teams License Assign Date",
                "Assigned Products",
            ],
            Report::Office365ActivationsUserDetail => &[
                "Report Refresh Date",
                "User Principal Name",
                "Display Name",
                "Product Type",
                "Last Activated Date",
                "Windows",
                "Mac",
                "Windows 10 Mobile",
                "iOS",
                "Android",
                "Activated On Shared Computer",
            ],
            Report::M365AppUserDetail => &[
                "Report Refresh Date",
                "User Principal Name",
                "Last Activation Date",
                "Last Activity Date",
                "Report Period",
                "Windows",
                "Mac",
                "Mobile",
                "Web",
                "Outlook",
                "Word",
                "Excel",
                "PowerPoint",
                "OneNote",
                "Teams",
                "Outlook (Windows)",
                "Word (Windows)",
                "Excel (Windows)",
                "PowerPoint (Windows)",
                "OneNote (Windows)",
                "Teams (Windows)",
                "Outlook (Mac)",
                "Word (Mac)",
                "Excel (Mac)",
                "PowerPoint (Mac)",
                "OneNote (Mac)",
                "Teams (Mac)",
                "Outlook (Mobile)",
                "Word (Mobile)",
                "Excel (Mobile)",
                "PowerPoint (Mobile)",
                "OneNote (Mobile)",
                "Teams (Mobile)",
                "Outlook (Web)",
                "Word (Web)",
                "Excel (Web)",
                "PowerPoint (Web)",
                "OneNote (Web)",
                "Teams (Web)",
            ],
            Report::MailboxUsageDetail => &[
                "Report Refresh Date",
                "User Principal Name",
                "Display Name",
                "Is Deleted",
                "Deleted Date",
                "Created Date",
                "Last Activity Date",
                "Item Count",
                "Storage Used (Byte)",
                "Issue Warning Quota (Byte)",
                "Prohibit Send Quota (Byte)",
                "Prohibit Send/Receive Quota (Byte)",
                "Deleted Item Count",
                "Deleted Item Size (Byte)",
                "Deleted Item Quota (Byte)",
                "Has Archive",
                "Report Period",
            ],
            Report::EmailActivityUserDetail => &[
                "Report Refresh Date",
                "User Principal Name",
                "Display Name",
                "Is Deleted",
                "Deleted Date",
                "Last Activity Date",
                "Send Count",
                "Receive Count",
                "Read Count",
                "Meeting Created Count",
                "Meeting Interacted Count",
                "Assigned Products",
                "Report Period",
            ],
            Report::OneDriveUsageAccountDetail => &[
                "Report Refresh Date",
                "Site URL",
                "Owner Display Name",
                "Is Deleted",
                "Last Activity Date",
                "File Count",
                "Active File Count",
                "Storage Used (Byte)",
                "Storage Allocated (Byte)",
                "Owner Principal Name",
                "Report Period",
            ],
            Report::SharePointActivityUserDetail => &[
                "Report Refresh Date",
                "User Principal Name",
                "Is Deleted",
                "Deleted Date",
                "Last Activity Date",
                "Viewed Or Edited File Count",
                "Synced File Count",
                "Shared Internally File Count",
                "Shared Externally File Count",
                "Visited Page Count",
                "Assigned Products",
                "Report Period",
            ],
            Report::TeamsUserActivityUserDetail => &[
                "Report Refresh Date",
                "Tenant Display Name",
                "Shared Channel Tenant Display Names",
                "User Id",
                "User Principal Name",
                "Last Activity Date",
                "Is Deleted",
                "Deleted Date",
                "Assigned Products",
                "Team Chat Message Count",
                "Private Chat Message Count",
                "Call Count",
                "Meeting Count",
                "Post Messages",
                "Reply Messages",
                "Urgent Messages",
                "Meetings Organized Count",
                "Meetings Attended Count",
                "Ad Hoc Meetings Organized Count",
                "Ad Hoc Meetings Attended Count",
                "Scheduled One-time Meetings Organized Count",
                "Scheduled One-time Meetings Attended Count",
                "Scheduled Recurring Meetings Organized Count",
                "Scheduled Recurring Meetings Attended Count",
                "Audio Duration",
                "Video Duration",
                "Screen Share Duration",
                "Audio Duration In Seconds",
                "Video Duration In Seconds",
                "Screen Share Duration In Seconds",
                "Has Other Action",
                "Is Licensed",
                "Report Period",
            ],
        }
    }

    /// Looks a report up by its stream name.
    pub fn from_stream(name: &str) -> Option<Report> {
        Report::ALL.into_iter().find(|r| r.stream() == name)
    }

    /// Looks a report up by its Graph function name.
    pub fn from_function(name: &str) -> Option<Report> {
        Report::ALL.into_iter().find(|r| r.function() == name)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.stream())
    }
}

/// Valid `report_period` values (graph-api.md §4).
pub const REPORT_PERIODS: &[&str] = &["D7", "D30", "D90", "D180"];

/// How a typed report cell is read (the SQL macro of the same name in `sql/meta/002_macros.sql`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    Date,
    Int,
    Bool,
}

impl Cell {
    /// The name in typed column names (`Last Activity Date [date]`) and in `m365_<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Cell::Date => "date",
            Cell::Int => "int",
            Cell::Bool => "bool",
        }
    }

    pub fn sql_type(self) -> &'static str {
        match self {
            Cell::Date => "DATE",
            Cell::Int => "BIGINT",
            Cell::Bool => "BOOLEAN",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_has_one_name_and_is_found_by_it() {
        let names: Vec<&str> = Stream::all().map(Stream::name).collect();
        assert_eq!(names.len(), 11);
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for s in Stream::all() {
            assert_eq!(Stream::from_name(s.name()), Some(s));
            assert_eq!(s.to_string(), s.name());
        }
        assert_eq!(Stream::Users.name(), "users");
        assert_eq!(
            Stream::from_name("mailbox_usage_detail"),
            Some(Stream::Report(Report::MailboxUsageDetail))
        );
        assert_eq!(Stream::from_name("nope"), None);
    }

    #[test]
    fn activations_takes_no_period() {
        assert_eq!(
            Report::Office365ActivationsUserDetail.path("D30"),
            "/reports/getOffice365ActivationsUserDetail"
        );
        assert_eq!(
            Report::MailboxUsageDetail.path("D7"),
            "/reports/getMailboxUsageDetail(period='D7')"
        );
    }

    #[test]
    fn names_round_trip() {
        for r in Report::ALL {
            assert_eq!(Report::from_stream(r.stream()), Some(r));
            assert_eq!(Report::from_function(r.function()), Some(r));
            assert!(r.documented_columns().contains(&r.user_column()));
        }
    }
}
