//! Generates the directory side of simulated people ([`super::directory`]): each part draws
//! from its own stream of randomness, so adding one never changes the values of the others
//! (or of the base record tests already know).
//!
//! Hygiene problems an admin should see are planted at known rates: a shared `otherMails`
//! address, an alias equal to the next user's mail, stale directory sync, managers who are
//! not users of the tenant (deleted, or an organizational contact).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{Days, NaiveDate, NaiveDateTime, NaiveTime};

use super::directory::{
    Directory, Manager, ON_PREM_DOMAIN, OnPrem, SHARED_OTHER_MAIL, SignIns, escape_rdn,
    sam_account_name,
};
use super::prng::{Rng, format_guid, mix, salt};
use super::tenant::{MAIL_DOMAIN, TENANT_DOMAIN, Tenant, UserRec};

const SALT_DIRECTORY: u64 = salt("directory-identity");
const SALT_MANAGER: u64 = salt("manager");
const SALT_MANAGER_CHANGE: u64 = salt("manager-change");
const SALT_SIGN_IN: u64 = salt("sign-in-activity");

fn at(d: NaiveDate, secs: u64) -> NaiveDateTime {
    d.and_time(NaiveTime::MIN) + chrono::Duration::seconds(secs as i64)
}

fn days_before(d: NaiveDate, n: u64) -> NaiveDate {
    d.checked_sub_days(Days::new(n)).unwrap_or(d)
}

impl Tenant {
    /// The directory attributes of user `i` whose base record is `u`.
    pub(crate) fn directory(&self, i: u64, u: &UserRec) -> Directory {
        let mut r = Rng::new(self.seed, i, SALT_DIRECTORY);
        let local = u.upn.split('@').next().unwrap_or_default();
        let mut d = Directory::default();
        if u.guest {
            d.external_user_state = Some(if r.chance(0.85) {
                "Accepted"
            } else {
                "PendingAcceptance"
            });
            d.creation_type = Some("Invitation");
            d.other_mails = u.mail.iter().cloned().collect();
            d.proxy_addresses = u.mail.iter().map(|m| format!("SMTP:{m}")).collect();
            return d;
        }
        let room = u.display_name.starts_with("Conf Room ");
        if let Some(m) = &u.mail {
            d.proxy_addresses.push(format!("SMTP:{m}"));
            d.proxy_addresses
                .push(format!("smtp:{}@{TENANT_DOMAIN}", local.to_lowercase()));
            if r.chance(0.25) {
                let short = local.trim_end_matches(|c: char| c.is_ascii_digit());
                d.proxy_addresses.push(format!(
                    "smtp:{}{}@{MAIL_DOMAIN}",
                    short.to_lowercase(),
                    i % 97
                ));
            }
        }
        // Planted collisions: an alias that is the next user's mail (left over from a role
        // that moved), and a shared helpdesk address in otherMails.
        if r.chance(0.004)
            && let Some(next) = self.record_base(i + 1).mail
        {
            d.proxy_addresses.push(format!("smtp:{next}"));
        }
        if r.chance(0.003) {
            d.other_mails.push(SHARED_OTHER_MAIL.to_string());
        } else if r.chance(0.1) {
            let personal = local.to_lowercase().replace(['\'', '_'], "");
            d.other_mails.push(format!("{personal}@outlook.com"));
        }
        if !room {
            d.employee_type = match r.unit() {
                x if x < 0.70 => Some("Employee"),
                x if x < 0.82 => Some("Contractor"),
                x if x < 0.85 => Some("Intern"),
                _ => None,
            };
            if u.employee_id.is_some() && r.chance(0.8) {
                let hired = days_before(u.created.date(), r.range(0, 30));
                d.employee_hire_date = Some(at(hired, 0));
            }
        }
        // Synced (true) or synced once and no longer (false): the on-premises identity stays.
        if u.on_premises_sync_enabled.is_some() {
            let stale = u.on_premises_sync_enabled == Some(false) || r.chance(0.03);
            let last_sync = if stale {
                at(days_before(self.today, r.range(8, 400)), r.below(86_400))
            } else {
                at(days_before(self.today, 1), 86_400 - r.range(60, 3_600))
            };
            let ou = if room { "Resources" } else { "Staff" };
            d.on_prem = Some(OnPrem {
                sam_account_name: sam_account_name(local),
                distinguished_name: format!(
                    "CN={},OU={ou},DC=contoso,DC=local",
                    escape_rdn(&u.display_name)
                ),
                immutable_id: STANDARD
                    .encode([r.next_u64().to_le_bytes(), r.next_u64().to_le_bytes()].concat()),
                domain_name: ON_PREM_DOMAIN,
                last_sync,
            });
        }
        d
    }

    /// Who user `i` reports to as of `epoch`: a tree (a manager always has a lower index, so
    /// there are no cycles), about 1% of references dangling and 0.5% to contacts. About 30%
    /// of the users changed in a delta round get a new manager in it.
    pub fn manager_at(&self, i: u64, epoch: u64) -> Option<Manager> {
        let first = self.first_manager(i);
        let born = self.born(i);
        let changed = (born + 1..=epoch).rev().find(|k| {
            self.changed_in(i, *k)
                && Rng::new(self.seed, i, SALT_MANAGER_CHANGE ^ mix(*k)).chance(0.3)
        });
        match changed {
            None => first,
            Some(k) => {
                let mut r = Rng::new(self.seed, i, SALT_MANAGER_CHANGE ^ mix(k) ^ 1);
                match (i, r.chance(0.1)) {
                    (0, _) | (_, true) => None,
                    _ => Some(Manager::User(r.below(i.min(self.users)))),
                }
            }
        }
    }

    fn first_manager(&self, i: u64) -> Option<Manager> {
        let mut r = Rng::new(self.seed, i, SALT_MANAGER);
        if i == 0 || self.is_guest(i) {
            return None;
        }
        match r.unit() {
            x if x < 0.08 => None,
            x if x < 0.09 => Some(Manager::Gone(r.guid())),
            x if x < 0.095 => Some(Manager::Contact(r.guid())),
            _ => {
                // Mostly close to the top: a spread of depths, as org charts have.
                let span = i.min(self.users);
                let u = r.unit();
                Some(Manager::User(((span as f64) * u * u) as u64))
            }
        }
    }

    /// The GUID `manager` names for `m`.
    pub fn manager_id(&self, m: &Manager) -> String {
        match m {
            Manager::User(k) => self.user_id(*k),
            Manager::Gone(id) | Manager::Contact(id) => id.clone(),
        }
    }

    /// The `@odata.type` `manager` carries for `m`.
    pub fn manager_type(m: &Manager) -> &'static str {
        match m {
            Manager::Contact(_) => "#microsoft.graph.orgContact",
            _ => "#microsoft.graph.user",
        }
    }

    /// `signInActivity` of user `i` as `/users` serves it (`None`: never signed in).
    pub fn sign_ins_of(&self, i: u64) -> Option<SignIns> {
        self.record(i).sign_ins
    }

    /// `signInActivity` of user `i`, or `None` for one that never signed in. Disabled
    /// accounts stopped signing in a while ago; a few members only sign in non-interactively.
    pub(crate) fn sign_ins(&self, i: u64, u: &UserRec) -> Option<SignIns> {
        let mut r = Rng::new(self.seed, i, SALT_SIGN_IN);
        if r.chance(0.06) {
            return None;
        }
        let created = u.created;
        let recent = |r: &mut Rng, max_days: u64| {
            let t = at(
                days_before(self.today, r.range(0, max_days)),
                r.below(86_400),
            );
            t.max(created)
        };
        let max_days = if !u.account_enabled {
            400
        } else if u.guest {
            180
        } else {
            45
        };
        let interactive = (!r.chance(0.08)).then(|| recent(&mut r, max_days));
        let non_interactive = r.chance(0.8).then(|| recent(&mut r, max_days));
        let last_successful = match (interactive, non_interactive) {
            (Some(a), Some(b)) if r.chance(0.9) => Some(a.max(b)),
            (Some(a), _) if r.chance(0.9) => Some(a),
            _ => None,
        };
        Some(SignIns {
            last: interactive,
            last_non_interactive: non_interactive,
            last_successful,
            request_id: format_guid(r.next_u64(), r.next_u64()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(users: u64) -> Tenant {
        Tenant {
            seed: 7,
            users,
            today: NaiveDate::from_ymd_opt(2026, 11, 28).unwrap(),
            concealed: false,
        }
    }

    #[test]
    fn managers_form_a_tree_with_dangling_references() {
        let t = tenant(5_000);
        let (mut users, mut gone, mut contacts, mut none) = (0, 0, 0, 0);
        for i in 0..t.users {
            match t.manager_at(i, 0) {
                Some(Manager::User(m)) => {
                    assert!(
                        m < i,
                        "user {i}'s manager {m} must come before it: no cycles"
                    );
                    users += 1;
                }
                Some(Manager::Gone(_)) => gone += 1,
                Some(Manager::Contact(_)) => contacts += 1,
                None => none += 1,
            }
        }
        assert!(
            users > 4_000 && gone > 20 && contacts > 5 && none > 300,
            "{users} {gone} {contacts} {none}"
        );
        // Changes between epochs move some managers, still without cycles.
        let moved = (0..t.users)
            .filter(|i| t.manager_at(*i, 0) != t.manager_at(*i, 3))
            .inspect(|i| {
                if let Some(Manager::User(m)) = t.manager_at(*i, 3) {
                    assert!(m < *i);
                }
            })
            .count();
        assert!(moved > 10 && moved < 300, "{moved}");
    }

    #[test]
    fn synced_users_carry_their_on_premises_identity() {
        let t = tenant(2_000);
        let (mut synced, mut stale, mut guests, mut shared) = (0, 0, 0, 0);
        for i in 0..t.users {
            let u = t.record(i);
            let d = &u.directory;
            assert_eq!(d.on_prem.is_some(), u.on_premises_sync_enabled.is_some());
            if let Some(p) = &d.on_prem {
                synced += 1;
                assert!(p.sam_account_name.len() <= 20 * 4 && !p.sam_account_name.contains('@'));
                assert!(
                    p.distinguished_name.starts_with("CN=")
                        && p.distinguished_name.ends_with(",DC=contoso,DC=local")
                );
                assert_eq!(STANDARD.decode(&p.immutable_id).unwrap().len(), 16);
                if p.last_sync < at(days_before(t.today, 7), 0) {
                    stale += 1;
                }
            }
            if let Some(m) = &u.mail {
                assert_eq!(d.proxy_addresses.first(), Some(&format!("SMTP:{m}")));
            }
            if u.guest {
                guests += 1;
                assert_eq!(d.creation_type, Some("Invitation"));
                assert!(d.external_user_state.is_some());
            }
            if d.other_mails.iter().any(|m| m == SHARED_OTHER_MAIL) {
                shared += 1;
            }
        }
        assert!(
            synced > 800 && stale > 100 && guests > 50 && shared >= 2,
            "{synced} {stale} {guests} {shared}"
        );
    }

    #[test]
    fn sign_ins_are_in_the_past_and_after_creation() {
        let t = tenant(1_000);
        let mut never = 0;
        for i in 0..t.users {
            let Some(s) = t.sign_ins(i, &t.record_base(i)) else {
                never += 1;
                continue;
            };
            for d in [s.last, s.last_non_interactive, s.last_successful]
                .into_iter()
                .flatten()
            {
                assert!(d.date() <= t.today && d >= t.record(i).created);
            }
        }
        assert!(never > 20 && never < 120, "{never}");
    }
}
