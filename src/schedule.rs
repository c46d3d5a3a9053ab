//! Connector schedules: the `[schedule]` grammar and a pure "when is the next run" function.
//!
//! A connector config says when it runs:
//!
//! ```toml
//! [schedule]
//! repeats = "daily"        # grammar below
//! start_time = "02:00"     # 24h local wall-clock time
//! timezone = "UTC"         # IANA name, e.g. "Europe/Amsterdam"
//! ```
//!
//! # `repeats` grammar
//!
//! Case-insensitive; extra spaces are ignored.
//!
//! | form | meaning |
//! | --- | --- |
//! | `hourly`, `every hour`, `every N hours` (N = 1..=24) | at the local times `start_time + k*N hours` (k any whole number) that fall on each local day; `every 24 hours` is `daily` |
//! | `daily`, `every day` | every day at `start_time` |
//! | `weekdays` | Monday to Friday at `start_time` |
//! | `weekly on mon,thu`, `weekly on monday, thursday` | on those days (3-letter or full English names, comma separated, duplicates ignored) |
//! | `monthly on 1`, `monthly on 1,15`, `monthly on last` | on those days of the month (1..=31); a day past the month's end means its last day, and `last` is the same as `31` |
//!
//! For `every N hours`, `start_time` only sets the phase: every 6 hours from 02:00 runs at
//! 02:00, 08:00, 14:00 and 20:00, and `hourly` from 02:30 runs at every half past, 00:30
//! included. A phase (rather than "from start_time to midnight") keeps an hourly connector
//! hourly whatever start_time says. When N does not divide 24 the gap across midnight is
//! shorter (every 5 hours from 02:00: ..., 22:00, then 02:00).
//!
//! # Daylight saving time
//!
//! Times are wall-clock times in `timezone`, because that is what the admin wrote.
//! * A time that does not exist (spring forward, e.g. 02:30 on 2027-03-28 in Europe/Amsterdam)
//!   runs at the first instant after the gap (03:00 local, 01:00 UTC): a run is never skipped.
//!   For `every N hours` a slot in the gap moves the same way; when that lands on another
//!   slot's instant the two run once. So `hourly` on a `:00` phase has **23** runs on the
//!   spring-forward day (02:00 merges into 03:00), while on a `:30` phase it keeps 24
//!   (02:30 runs at 03:00, then 03:30).
//! * A time that occurs twice (fall back, e.g. 02:30 on 2027-10-31 in Europe/Amsterdam) runs
//!   once, at the first (summer-time) occurrence. Therefore `hourly` has **24** runs on the
//!   fall-back day, not 25: every wall-clock slot runs once and the repeated hour is not run
//!   again, so an hourly connector never re-runs a slot that it has just run.
//! * No instant is ever returned twice, and results are strictly increasing.

use std::fmt::{self, Display};
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone,
    Timelike, Utc, Weekday,
};
use chrono_tz::Tz;

/// Appended to every grammar error so that the admin sees what is accepted.
const GRAMMAR: &str = "accepted: hourly, every N hours (N = 1 to 24), daily, weekdays, \
                       weekly on mon,thu, monthly on 1,15, monthly on last";

const WEEK: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

/// How many local days `next_after` looks ahead. Any parsed schedule has a run within 62
/// days; only a hand-built `Weekly(vec![])` or `Monthly(vec![0])` gets this far.
const HORIZON_DAYS: usize = 400;

/// UTC offsets stay within ±26 hours (even historic local mean times), so the instant at
/// which a local time's gap ends is within this many seconds of that time read as UTC.
const GAP_SEARCH_SECS: i64 = 26 * 3600;

/// Parsed `repeats` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repeats {
    /// Every `n` hours (n = 1 for "hourly"), anchored each local day at start_time: the slots
    /// are start_time + k*n hours (k any whole number) that fall on the same local day, e.g.
    /// every 6 hours from 02:00 → 02:00, 08:00, 14:00, 20:00.
    EveryHours(u32),
    Daily,
    /// On the given weekdays (at least one), at start_time.
    Weekly(Vec<Weekday>),
    /// On the given days of month 1..=31 (at least one); a day past the month's end means the
    /// month's last day (so "monthly on 31" runs on Feb 28/29, Apr 30...); two configured days
    /// that clamp to the same date run once.
    Monthly(Vec<u32>),
}

/// A schedule that cannot be used: the message says what was wrong and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ScheduleError {
    pub message: String,
}

impl ScheduleError {
    fn repeats(what: impl Display) -> Self {
        Self {
            message: format!("{what}; {GRAMMAR}"),
        }
    }
}

impl FromStr for Repeats {
    type Err = ScheduleError;

    fn from_str(spec: &str) -> Result<Self, ScheduleError> {
        let spec = spec.trim();
        let words: Vec<&str> = spec.split_whitespace().collect();
        let lower: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
        let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
        // Everything after "weekly on"/"monthly on", as written, for the comma-separated list.
        let list = || words.get(2..).unwrap_or_default().join(" ");
        match lower.as_slice() {
            [] => Err(ScheduleError::repeats("repeats is empty")),
            ["hourly"] | ["every", "hour"] => Ok(Repeats::EveryHours(1)),
            ["daily"] | ["every", "day"] => Ok(Repeats::Daily),
            ["weekdays"] => Ok(Repeats::Weekly(WEEK[..5].to_vec())),
            ["every", _, "hours" | "hour"] => parse_hours(words[1], spec),
            ["weekly"] | ["weekly", "on"] => Err(ScheduleError::repeats(format!(
                "\"{spec}\" does not say on which days: add them, e.g. \"weekly on mon\" or \
                 \"weekly on mon, thu\""
            ))),
            ["monthly"] | ["monthly", "on"] => Err(ScheduleError::repeats(format!(
                "\"{spec}\" does not say on which days: add them, e.g. \"monthly on 1\", \
                 \"monthly on 1,15\" or \"monthly on last\""
            ))),
            ["weekly", "on", ..] => parse_weekdays(&list(), spec),
            ["monthly", "on", ..] => parse_month_days(&list(), spec),
            [first @ ("weekly" | "monthly"), ..] => Err(ScheduleError::repeats(format!(
                "expected \"on\" after \"{first}\" in \"{spec}\", e.g. \"{first} on {}\"",
                if *first == "weekly" {
                    "mon, thu"
                } else {
                    "1,15"
                }
            ))),
            _ => Err(ScheduleError::repeats(format!(
                "unknown schedule \"{spec}\""
            ))),
        }
    }
}

fn parse_hours(n: &str, spec: &str) -> Result<Repeats, ScheduleError> {
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ScheduleError::repeats(format!(
            "\"{n}\" in \"{spec}\" is not a whole number of hours"
        )));
    }
    match n.parse::<u32>() {
        Ok(24) => Ok(Repeats::Daily),
        Ok(n @ 1..=23) => Ok(Repeats::EveryHours(n)),
        _ => Err(ScheduleError::repeats(format!(
            "{n} hours in \"{spec}\" is out of range: use every 1 to 24 hours"
        ))),
    }
}

/// Splits a comma-separated list, refusing empty items so that typos like "mon,,thu" show.
fn list_items<'a>(list: &'a str, spec: &str) -> Result<Vec<&'a str>, ScheduleError> {
    list.split(',')
        .map(str::trim)
        .map(|item| {
            if item.is_empty() {
                Err(ScheduleError::repeats(format!("empty day in \"{spec}\"")))
            } else {
                Ok(item)
            }
        })
        .collect()
}

fn parse_weekdays(list: &str, spec: &str) -> Result<Repeats, ScheduleError> {
    let mut wanted = [false; 7];
    for item in list_items(list, spec)? {
        let lower = item.to_lowercase();
        let day = WEEK.iter().find(|d| {
            let full = weekday_name(**d).to_lowercase();
            lower == full || lower == full[..3]
        });
        match day {
            Some(d) => wanted[d.num_days_from_monday() as usize] = true,
            None => {
                let hint = if item.contains(' ') {
                    " (separate days with commas)"
                } else {
                    ""
                };
                return Err(ScheduleError::repeats(format!(
                    "unknown weekday \"{item}\" in \"{spec}\": use mon, tue, wed, thu, fri, \
                     sat, sun or full names{hint}"
                )));
            }
        }
    }
    let days = WEEK
        .iter()
        .copied()
        .filter(|d| wanted[d.num_days_from_monday() as usize]);
    Ok(Repeats::Weekly(days.collect()))
}

fn parse_month_days(list: &str, spec: &str) -> Result<Repeats, ScheduleError> {
    let mut days = Vec::new();
    for item in list_items(list, spec)? {
        let day = if item.eq_ignore_ascii_case("last") {
            31
        } else if item.bytes().all(|b| b.is_ascii_digit()) {
            match item.parse::<u32>() {
                Ok(d @ 1..=31) => d,
                _ => {
                    return Err(ScheduleError::repeats(format!(
                        "day {item} is out of range in \"{spec}\": use 1 to 31 or last"
                    )));
                }
            }
        } else {
            return Err(ScheduleError::repeats(format!(
                "\"{item}\" in \"{spec}\" is not a day of the month: use 1 to 31 or last"
            )));
        };
        days.push(day);
    }
    days.sort_unstable();
    days.dedup();
    Ok(Repeats::Monthly(days))
}

fn weekday_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

/// "a", "a and b", "a, b and c".
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

impl Repeats {
    /// Words for a status table: "every 6 hours", "daily", "weekly on Monday, Thursday",
    /// "monthly on day 1 and 15".
    pub fn describe(&self) -> String {
        match self {
            Repeats::EveryHours(1) => "every hour".to_string(),
            Repeats::EveryHours(n) => format!("every {n} hours"),
            Repeats::Daily => "daily".to_string(),
            Repeats::Weekly(days) if days.is_empty() => "weekly on no day (never runs)".into(),
            Repeats::Weekly(days) => {
                let has = |d: &Weekday| days.contains(d);
                if WEEK[..5].iter().all(has) && !WEEK[5..].iter().any(has) {
                    return "weekdays (Monday to Friday)".to_string();
                }
                let names: Vec<&str> = WEEK
                    .iter()
                    .filter(|d| has(d))
                    .map(|d| weekday_name(*d))
                    .collect();
                format!("weekly on {}", names.join(", "))
            }
            Repeats::Monthly(days) => {
                let mut days: Vec<u32> = days
                    .iter()
                    .map(|d| (*d).min(31))
                    .filter(|d| *d >= 1)
                    .collect();
                days.sort_unstable();
                days.dedup();
                if days.is_empty() {
                    return "monthly on no day (never runs)".to_string();
                }
                let last = days.last() == Some(&31);
                let numbered: Vec<String> = days
                    .iter()
                    .filter(|d| **d < 31)
                    .map(u32::to_string)
                    .collect();
                let mut parts = Vec::new();
                if !numbered.is_empty() {
                    parts.push(format!("day {}", and_list(&numbered)));
                }
                if last {
                    parts.push("the last day".to_string());
                }
                // Only 29 and 30 need the caveat: 31 already reads "the last day".
                let caveat = if days.iter().any(|d| (29..=30).contains(d)) {
                    " (last day when shorter)"
                } else {
                    ""
                };
                format!("monthly on {}{caveat}", and_list(&parts))
            }
        }
    }

    /// The local times of day at which this runs on `date`, sorted; empty if not that day.
    fn times_on(&self, date: NaiveDate, start: NaiveTime) -> Vec<NaiveTime> {
        // Leap-second nanoseconds would make the slot arithmetic fail: run at :59.999… instead.
        let nanos = start.nanosecond().min(999_999_999);
        let secs = start.num_seconds_from_midnight();
        let at = |s: u32| NaiveTime::from_num_seconds_from_midnight_opt(s, nanos);
        let runs_today = match self {
            Repeats::EveryHours(n) => {
                // A hand-built 0 or >24 would divide by zero or never repeat: clamp to 1..=24.
                let period = (*n).clamp(1, 24) * 3600;
                return (secs % period..86_400)
                    .step_by(period as usize)
                    .filter_map(at)
                    .collect();
            }
            Repeats::Daily => true,
            Repeats::Weekly(days) => days.contains(&date.weekday()),
            Repeats::Monthly(days) => {
                let last = last_day_of_month(date);
                days.iter().any(|d| *d >= 1 && (*d).min(last) == date.day())
            }
        };
        if runs_today {
            at(secs).into_iter().collect()
        } else {
            Vec::new()
        }
    }
}

fn last_day_of_month(date: NaiveDate) -> u32 {
    let (y, m) = if date.month() == 12 {
        (date.year() + 1, 1)
    } else {
        (date.year(), date.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|first| first.pred_opt())
        .map_or(31, |d| d.day())
}

impl Display for Repeats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// When a connector runs: a parsed `[schedule]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub repeats: Repeats,
    pub start_time: NaiveTime,
    pub timezone: Tz,
}

impl Schedule {
    /// Parses `repeats` (grammar in the module docs) and the IANA `timezone`. A time zone that
    /// looks like a typo ("Europe/Amsterdm", "europe/amsterdam") gets the closest name
    /// suggested, because a silently wrong zone would shift every run.
    pub fn new(
        repeats: &str,
        start_time: NaiveTime,
        timezone: &str,
    ) -> Result<Schedule, ScheduleError> {
        Ok(Schedule {
            repeats: repeats.parse()?,
            start_time,
            timezone: parse_timezone(timezone)?,
        })
    }

    /// The first scheduled instant strictly after `after`.
    ///
    /// Looks at candidate local days from the day before `after`'s local date on (a DST gap
    /// can push a run past midnight), so it costs a few days of work, not a scan. For an
    /// `after` within days of the end of chrono's range (year 262143), or a hand-built
    /// schedule with no days, there is no later run and it returns `DateTime::<Utc>::MAX_UTC`.
    pub fn next_after(&self, after: DateTime<Utc>) -> DateTime<Utc> {
        let local = local_of(self.timezone, after.naive_utc()).unwrap_or(after.naive_utc());
        let mut day = local.date().pred_opt().unwrap_or(local.date());
        let mut best: Option<DateTime<Utc>> = None;
        let mut days_since_hit = 0;
        for _ in 0..HORIZON_DAYS {
            if let Some(first) = self.instants_on(day).into_iter().find(|t| *t > after) {
                best = Some(best.map_or(first, |b| b.min(first)));
            }
            if best.is_some() {
                // A gap-shifted run could in theory land after the next day's first run, so
                // the day after a hit is looked at too.
                days_since_hit += 1;
                if days_since_hit > 1 {
                    break;
                }
            }
            match day.succ_opt() {
                Some(next) => day = next,
                None => break,
            }
        }
        best.unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// The next `n` instants strictly after `after`, increasing (fewer only at the end of
    /// chrono's range or for a hand-built schedule with no days).
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n.min(1024));
        let mut cursor = after;
        while out.len() < n {
            let next = self.next_after(cursor);
            if next <= cursor || next == DateTime::<Utc>::MAX_UTC {
                break;
            }
            out.push(next);
            cursor = next;
        }
        out
    }

    /// Instants in (from, to]: what a server that was asleep must consider due. Works day by
    /// day, so a long window costs one pass, not one `next_after` per run.
    pub fn between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        if to <= from {
            return Vec::new();
        }
        let local_date = |t: DateTime<Utc>| {
            local_of(self.timezone, t.naive_utc())
                .unwrap_or(t.naive_utc())
                .date()
        };
        let first = local_date(from).pred_opt().unwrap_or(local_date(from));
        let last = local_date(to).succ_opt().unwrap_or(local_date(to));
        let mut out = Vec::new();
        let mut day = first;
        while day <= last {
            out.extend(
                self.instants_on(day)
                    .into_iter()
                    .filter(|t| from < *t && *t <= to),
            );
            match day.succ_opt() {
                Some(next) => day = next,
                None => break,
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// E.g. "daily at 02:00 Europe/Amsterdam", "every 6 hours at 02:00, 08:00, 14:00, 20:00 UTC".
    pub fn describe(&self) -> String {
        let tz = self.timezone.name();
        let when = match &self.repeats {
            Repeats::EveryHours(n) => {
                let slots = Repeats::EveryHours(*n).times_on(NaiveDate::MIN, self.start_time);
                let first = slots.first().copied().unwrap_or(self.start_time);
                if *n <= 1 {
                    let secs = if first.second() == 0 {
                        String::new()
                    } else {
                        format!(":{:02}", first.second())
                    };
                    format!("at :{:02}{secs}", first.minute())
                } else if slots.len() <= 6 {
                    let times: Vec<String> = slots.iter().map(|t| clock(*t)).collect();
                    format!("at {}", times.join(", "))
                } else {
                    format!("from {}", clock(first))
                }
            }
            _ => format!("at {}", clock(self.start_time)),
        };
        format!("{} {when} {tz}", self.repeats.describe())
    }

    /// This schedule's runs on local `date`, as sorted distinct UTC instants.
    fn instants_on(&self, date: NaiveDate) -> Vec<DateTime<Utc>> {
        let mut out: Vec<DateTime<Utc>> = self
            .repeats
            .times_on(date, self.start_time)
            .into_iter()
            .filter_map(|t| resolve(self.timezone, date.and_time(t)))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// "02:00", or "02:00:30" when seconds were given.
fn clock(t: NaiveTime) -> String {
    if t.second() == 0 {
        format!("{:02}:{:02}", t.hour(), t.minute())
    } else {
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
    }
}

/// The wall-clock time in `tz` at UTC instant `utc`; `None` only at the ends of chrono's range.
fn local_of(tz: Tz, utc: NaiveDateTime) -> Option<NaiveDateTime> {
    utc.checked_add_offset(tz.offset_from_utc_datetime(&utc).fix())
}

/// The instant at which `local` is run: the first occurrence of a repeated time, and the end
/// of the gap for a time that is skipped.
fn resolve(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.with_timezone(&Utc).min(b.with_timezone(&Utc))),
        LocalResult::None => gap_end(tz, local),
    }
}

/// The first instant whose wall clock reads `local` or later, for a `local` inside a gap: that
/// is the transition itself (03:00 local when 02:00–03:00 is skipped). Found by bisection over
/// whole seconds; since `local` does not exist, the crossing can only be the gap's jump.
fn gap_end(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let t = local.and_utc().timestamp();
    let reached = |secs: i64| -> Option<bool> {
        let utc = DateTime::from_timestamp(secs, 0)?.naive_utc();
        Some(local_of(tz, utc)? >= local)
    };
    let (mut lo, mut hi) = (
        t.checked_sub(GAP_SEARCH_SECS)?,
        t.checked_add(GAP_SEARCH_SECS)?,
    );
    if reached(lo)? || !reached(hi)? {
        return None;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if reached(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    DateTime::from_timestamp(hi, 0)
}

fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    const EXAMPLES: &str =
        "use an IANA name such as \"Europe/Amsterdam\", \"America/New_York\" or \"UTC\"";
    let name = name.trim();
    if name.is_empty() {
        return Err(ScheduleError {
            message: format!("timezone is empty: {EXAMPLES}"),
        });
    }
    if let Ok(tz) = name.parse::<Tz>() {
        return Ok(tz);
    }
    if (2..=5).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_uppercase()) {
        let example = ABBREVIATIONS
            .iter()
            .find(|(a, _)| *a == name)
            .map(|(_, z)| format!("e.g. \"{z}\""))
            .unwrap_or_else(|| "such as \"Europe/Amsterdam\" or \"America/New_York\"".into());
        return Err(ScheduleError {
            message: format!(
                "\"{name}\" is an abbreviation, not a time zone: abbreviations are ambiguous and name only half of the year's offset; use the IANA name of a city in the zone, {example}"
            ),
        });
    }
    let hint = match suggest_timezone(name) {
        Some(s) => format!("did you mean \"{s}\"? Otherwise {EXAMPLES}"),
        None => EXAMPLES.to_string(),
    };
    Err(ScheduleError {
        message: format!("unknown time zone \"{name}\": {hint}"),
    })
}

/// Common abbreviations that are not IANA names, with a zone that uses them.
const ABBREVIATIONS: &[(&str, &str)] = &[
    ("CEST", "Europe/Berlin"),
    ("BST", "Europe/London"),
    ("IST", "Asia/Kolkata"),
    ("EDT", "America/New_York"),
    ("CDT", "America/Chicago"),
    ("MDT", "America/Denver"),
    ("PST", "America/Los_Angeles"),
    ("PDT", "America/Los_Angeles"),
    ("AEST", "Australia/Sydney"),
    ("AEDT", "Australia/Sydney"),
    ("JST", "Asia/Tokyo"),
];

/// The IANA name closest to `name`: a case-insensitive match, else the smallest edit distance
/// (against the whole name, or the city part when `name` has no '/') if it is small enough to
/// look like a typo.
fn suggest_timezone(name: &str) -> Option<&'static str> {
    let wanted = name.to_lowercase();
    let whole = |tz: &Tz| tz.name().to_lowercase();
    if let Some(tz) = chrono_tz::TZ_VARIANTS.iter().find(|tz| whole(tz) == wanted) {
        return Some(tz.name());
    }
    let distance = |tz: &Tz| {
        let full = whole(tz);
        let d = strsim::levenshtein(&wanted, &full);
        match full.rsplit_once('/') {
            Some((_, city)) if !wanted.contains('/') => d.min(strsim::levenshtein(&wanted, city)),
            _ => d,
        }
    };
    let (best, d) = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| (tz, distance(tz)))
        .min_by_key(|(_, d)| *d)?;
    let allowed = (wanted.chars().count() / 4).max(2);
    (d <= allowed).then(|| best.name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("test timestamp")
    }

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).expect("test time")
    }

    fn sched(repeats: &str, h: u32, m: u32, tz: &str) -> Schedule {
        Schedule::new(repeats, hm(h, m), tz).expect("test schedule")
    }

    fn err(repeats: &str) -> String {
        repeats.parse::<Repeats>().expect_err(repeats).message
    }

    fn strings(v: &[DateTime<Utc>]) -> Vec<String> {
        v.iter()
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .collect()
    }

    /// Runs per local day in `tz` on `date`: runs in (start of day, start of next day].
    fn runs_on(s: &Schedule, date: &str) -> Vec<DateTime<Utc>> {
        let day: NaiveDate = date.parse().expect("test date");
        let start =
            |d: NaiveDate| resolve(s.timezone, d.and_time(NaiveTime::MIN)).expect("midnight");
        let next = day.succ_opt().expect("next day");
        // Both ends shifted back by 1s so that a run at local 00:00 counts for its own day.
        let one = TimeDelta::seconds(1);
        s.between(start(day) - one, start(next) - one)
    }

    #[test]
    fn accepted_forms() {
        use Weekday::*;
        let ok = |s: &str| s.parse::<Repeats>().unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(ok("hourly"), Repeats::EveryHours(1));
        assert_eq!(ok("  Every   Hour "), Repeats::EveryHours(1));
        assert_eq!(ok("every 1 hours"), Repeats::EveryHours(1));
        assert_eq!(ok("every 6 hours"), Repeats::EveryHours(6));
        assert_eq!(ok("EVERY 24 HOURS"), Repeats::Daily);
        assert_eq!(ok("daily"), Repeats::Daily);
        assert_eq!(ok("every day"), Repeats::Daily);
        assert_eq!(
            ok("weekdays"),
            Repeats::Weekly(vec![Mon, Tue, Wed, Thu, Fri])
        );
        assert_eq!(ok("weekly on mon,thu"), Repeats::Weekly(vec![Mon, Thu]));
        assert_eq!(
            ok("Weekly on Monday, THURSDAY"),
            Repeats::Weekly(vec![Mon, Thu])
        );
        assert_eq!(
            ok("weekly on thu , mon, monday"),
            Repeats::Weekly(vec![Mon, Thu])
        );
        assert_eq!(ok("monthly on 1"), Repeats::Monthly(vec![1]));
        assert_eq!(ok("monthly on 15, 1,15"), Repeats::Monthly(vec![1, 15]));
        assert_eq!(ok("Monthly on LAST"), Repeats::Monthly(vec![31]));
    }

    #[test]
    fn describe_words() {
        let d = |s: &str| s.parse::<Repeats>().expect(s).describe();
        assert_eq!(d("hourly"), "every hour");
        assert_eq!(d("every 6 hours"), "every 6 hours");
        assert_eq!(d("daily"), "daily");
        assert_eq!(d("weekly on thu,mon"), "weekly on Monday, Thursday");
        assert_eq!(d("weekdays"), "weekdays (Monday to Friday)");
        assert_eq!(d("monthly on 1,15"), "monthly on day 1 and 15");
        assert_eq!(
            d("monthly on 1,15,30"),
            "monthly on day 1, 15 and 30 (last day when shorter)"
        );
        assert_eq!(d("monthly on last"), "monthly on the last day");
        assert_eq!(d("monthly on 1, 31"), "monthly on day 1 and the last day");

        assert_eq!(
            sched("daily", 2, 0, "Europe/Amsterdam").describe(),
            "daily at 02:00 Europe/Amsterdam"
        );
        assert_eq!(
            sched("every 6 hours", 2, 0, "UTC").describe(),
            "every 6 hours at 02:00, 08:00, 14:00, 20:00 UTC"
        );
        assert_eq!(
            sched("hourly", 2, 30, "UTC").describe(),
            "every hour at :30 UTC"
        );
        assert_eq!(
            sched("every 2 hours", 3, 0, "UTC").describe(),
            "every 2 hours from 01:00 UTC"
        );
        assert_eq!(
            sched("weekly on mon,thu", 23, 59, "America/New_York").to_string(),
            "weekly on Monday, Thursday at 23:59 America/New_York"
        );
    }

    #[test]
    fn invalid_forms_name_the_bad_part() {
        let e = err("weekly on mnday");
        assert!(
            e.contains(r#"unknown weekday "mnday" in "weekly on mnday": use mon, tue, wed, thu, fri, sat, sun"#),
            "{e}"
        );
        assert!(err("weekly on mon thu").contains("separate days with commas"));
        assert!(err("weekly on mon,,thu").contains("empty day"));
        for weekly in ["weekly", "  WEEKLY on "] {
            let e = err(weekly);
            assert!(e.contains("weekly on mon"), "{e}");
        }
        assert!(err("weekly mon").contains("expected \"on\""));
        assert!(err("monthly").contains("monthly on 1"));
        let e = err("monthly on 32");
        assert!(e.contains("day 32 is out of range"), "{e}");
        assert!(err("monthly on 0").contains("day 0 is out of range"));
        assert!(err("monthly on 1,99999999999").contains("day 99999999999 is out of range"));
        assert!(
            err("monthly on first")
                .contains("\"first\" in \"monthly on first\" is not a day of the month")
        );
        assert!(err("every 25 hours").contains("25 hours in \"every 25 hours\" is out of range"));
        assert!(err("every 0 hours").contains("out of range"));
        assert!(
            err("every six hours").contains("\"six\" in \"every six hours\" is not a whole number")
        );
        assert!(err("   ").contains("repeats is empty"));
        let e = err("fortnightly");
        assert!(e.contains("unknown schedule \"fortnightly\""), "{e}");
        // Every grammar error teaches the grammar.
        assert!(
            e.contains("every N hours") && e.contains("monthly on last"),
            "{e}"
        );
    }

    #[test]
    fn bad_time_zone_suggests_the_closest_name() {
        let e = Schedule::new("daily", hm(2, 0), "Europe/Amsterdm")
            .expect_err("typo")
            .message;
        assert!(e.contains("unknown time zone \"Europe/Amsterdm\""), "{e}");
        assert!(e.contains("did you mean \"Europe/Amsterdam\""), "{e}");
        let e = Schedule::new("daily", hm(2, 0), "europe/amsterdam")
            .expect_err("case")
            .message;
        assert!(e.contains("did you mean \"Europe/Amsterdam\""), "{e}");
        let e = Schedule::new("daily", hm(2, 0), "Amsterdam")
            .expect_err("city")
            .message;
        assert!(e.contains("did you mean \"Europe/Amsterdam\""), "{e}");
        let e = Schedule::new("daily", hm(2, 0), "CEST")
            .expect_err("abbreviation")
            .message;
        assert!(
            e.contains("is an abbreviation")
                && e.contains("\"Europe/Berlin\"")
                && !e.contains("did you mean"),
            "{e}"
        );
        let e = Schedule::new("daily", hm(2, 0), "Mars/Olympus_Mons")
            .expect_err("unknown")
            .message;
        assert!(
            !e.contains("did you mean") && e.contains("\"Europe/Amsterdam\""),
            "{e}"
        );
        assert!(
            Schedule::new("daily", hm(2, 0), "")
                .expect_err("empty")
                .message
                .contains("empty")
        );
        // A grammar error wins over a good zone, and a good zone parses.
        assert!(Schedule::new("weekly", hm(2, 0), "UTC").is_err());
        assert_eq!(
            sched("daily", 2, 0, " Europe/Amsterdam ").timezone,
            chrono_tz::Europe::Amsterdam
        );
    }

    #[test]
    fn daily_in_utc() {
        let s = sched("daily", 2, 0, "UTC");
        assert_eq!(
            s.next_after(utc("2027-01-01T00:00:00Z")),
            utc("2027-01-01T02:00:00Z")
        );
        // Strictly after: a run exactly at `after` is not returned again.
        assert_eq!(
            s.next_after(utc("2027-01-01T02:00:00Z")),
            utc("2027-01-02T02:00:00Z")
        );
        assert_eq!(
            s.next_after(utc("2027-12-31T03:00:00Z")),
            utc("2028-01-01T02:00:00Z")
        );
        assert_eq!(
            strings(&s.upcoming(utc("2027-01-01T01:59:59Z"), 3)),
            ["2027-01-01 02:00", "2027-01-02 02:00", "2027-01-03 02:00"]
        );
    }

    #[test]
    fn every_6_hours_and_phase() {
        let s = sched("every 6 hours", 2, 0, "UTC");
        assert_eq!(
            strings(&s.upcoming(utc("2027-01-01T00:00:00Z"), 5)),
            [
                "2027-01-01 02:00",
                "2027-01-01 08:00",
                "2027-01-01 14:00",
                "2027-01-01 20:00",
                "2027-01-02 02:00"
            ]
        );
        // The start time is a phase: every 5 hours from 02:00 wraps at midnight.
        let s = sched("every 5 hours", 2, 0, "UTC");
        let day = runs_on(&s, "2027-01-01");
        assert_eq!(
            strings(&day),
            [
                "2027-01-01 02:00",
                "2027-01-01 07:00",
                "2027-01-01 12:00",
                "2027-01-01 17:00",
                "2027-01-01 22:00"
            ]
        );
        // Hourly from 02:30 also runs at 00:30 and 01:30.
        let s = sched("hourly", 2, 30, "UTC");
        assert_eq!(
            s.next_after(utc("2027-01-01T00:00:00Z")),
            utc("2027-01-01T00:30:00Z")
        );
        assert_eq!(runs_on(&s, "2027-01-01").len(), 24);
    }

    #[test]
    fn weekly_on_mon_thu_across_a_week() {
        // 2027-01-01 is a Friday.
        let s = sched("weekly on mon,thu", 2, 0, "UTC");
        assert_eq!(
            strings(&s.upcoming(utc("2027-01-01T00:00:00Z"), 4)),
            [
                "2027-01-04 02:00",
                "2027-01-07 02:00",
                "2027-01-11 02:00",
                "2027-01-14 02:00"
            ]
        );
        let s = sched("weekdays", 9, 0, "UTC");
        assert_eq!(
            strings(&s.upcoming(utc("2027-01-01T10:00:00Z"), 2)),
            ["2027-01-04 09:00", "2027-01-05 09:00"]
        );
    }

    #[test]
    fn monthly_on_31_clamps_to_the_last_day() {
        let s = sched("monthly on 31", 2, 0, "UTC");
        assert_eq!(
            strings(&s.upcoming(utc("2027-01-01T00:00:00Z"), 4)),
            [
                "2027-01-31 02:00",
                "2027-02-28 02:00",
                "2027-03-31 02:00",
                "2027-04-30 02:00"
            ]
        );
        assert_eq!(
            strings(&s.upcoming(utc("2028-01-01T00:00:00Z"), 4)),
            [
                "2028-01-31 02:00",
                "2028-02-29 02:00",
                "2028-03-31 02:00",
                "2028-04-30 02:00"
            ]
        );
    }

    #[test]
    fn monthly_on_29_in_february() {
        let s = sched("monthly on 29", 2, 0, "UTC");
        assert_eq!(
            s.next_after(utc("2027-02-01T00:00:00Z")),
            utc("2027-02-28T02:00:00Z")
        );
        assert_eq!(
            s.next_after(utc("2027-02-28T02:00:00Z")),
            utc("2027-03-29T02:00:00Z")
        );
        assert_eq!(
            s.next_after(utc("2028-02-01T00:00:00Z")),
            utc("2028-02-29T02:00:00Z")
        );
        // 29 and 30 both clamp to Feb 28: one run, not two.
        let s = sched("monthly on 29,30", 2, 0, "UTC");
        assert_eq!(
            strings(&s.between(utc("2027-02-01T00:00:00Z"), utc("2027-03-31T00:00:00Z"))),
            ["2027-02-28 02:00", "2027-03-29 02:00", "2027-03-30 02:00"]
        );
    }

    #[test]
    fn monthly_on_last() {
        let s = sched("monthly on 1, last", 0, 0, "Europe/Amsterdam");
        assert_eq!(
            strings(&s.upcoming(utc("2027-04-02T00:00:00Z"), 3)),
            // Local midnight in summer time is 22:00 UTC the day before.
            ["2027-04-29 22:00", "2027-04-30 22:00", "2027-05-30 22:00"]
        );
    }

    #[test]
    fn dst_gap_and_fold_daily_amsterdam() {
        let s = sched("daily", 2, 30, "Europe/Amsterdam");
        assert_eq!(
            strings(&s.upcoming(utc("2027-03-26T12:00:00Z"), 3)),
            // 01:30 UTC (CET), then 02:30 does not exist: 03:00 CEST = 01:00 UTC, then 00:30 UTC.
            ["2027-03-27 01:30", "2027-03-28 01:00", "2027-03-29 00:30"]
        );
        // Fall back: 02:30 happens at 00:30 UTC (CEST) and 01:30 UTC (CET); runs at the first only.
        assert_eq!(
            s.next_after(utc("2027-10-30T12:00:00Z")),
            utc("2027-10-31T00:30:00Z")
        );
        assert_eq!(
            s.next_after(utc("2027-10-31T00:30:00Z")),
            utc("2027-11-01T01:30:00Z")
        );
        assert_eq!(runs_on(&s, "2027-10-31"), [utc("2027-10-31T00:30:00Z")]);
    }

    #[test]
    fn midnight_in_a_gap_runs_at_its_end() {
        // Brazil sprang forward at 00:00 on 2018-11-04: 00:00-01:00 local did not exist.
        let s = sched("daily", 0, 0, "America/Sao_Paulo");
        assert_eq!(
            s.next_after(utc("2018-11-03T12:00:00Z")),
            utc("2018-11-04T03:00:00Z")
        );
        assert_eq!(
            s.next_after(utc("2018-11-04T03:00:00Z")),
            utc("2018-11-05T02:00:00Z")
        );
    }

    #[test]
    fn hourly_across_dst_amsterdam() {
        let s = sched("hourly", 0, 0, "Europe/Amsterdam");
        let spring = runs_on(&s, "2027-03-28");
        assert_eq!(spring.len(), 23, "{:?}", strings(&spring));
        // 01:00 CET = 00:00 UTC, then 02:00 and 03:00 local both map to 01:00 UTC: once.
        assert_eq!(
            strings(&spring[1..3]),
            ["2027-03-28 00:00", "2027-03-28 01:00"]
        );
        assert_eq!(runs_on(&s, "2027-03-27").len(), 24);
        assert_eq!(runs_on(&s, "2027-03-29").len(), 24);
        let fall = runs_on(&s, "2027-10-31");
        assert_eq!(fall.len(), 24, "{:?}", strings(&fall));
        // 02:00 runs once at 00:00 UTC (CEST); the next run is 03:00 CET = 02:00 UTC.
        assert_eq!(
            strings(&fall[2..4]),
            ["2027-10-31 00:00", "2027-10-31 02:00"]
        );
        // On a :30 phase, 02:30 moves to 03:00 and does not collide: 24 runs.
        let s = sched("hourly", 0, 30, "Europe/Amsterdam");
        let spring = runs_on(&s, "2027-03-28");
        assert_eq!(spring.len(), 24);
        assert_eq!(
            strings(&spring[1..4]),
            ["2027-03-28 00:30", "2027-03-28 01:00", "2027-03-28 01:30"]
        );
    }

    #[test]
    fn hourly_across_dst_new_york() {
        let s = sched("hourly", 0, 0, "America/New_York");
        assert_eq!(runs_on(&s, "2027-03-13").len(), 24);
        let spring = runs_on(&s, "2027-03-14");
        assert_eq!(spring.len(), 23);
        // 01:00 EST = 06:00 UTC; 02:00 does not exist, 03:00 EDT = 07:00 UTC.
        assert_eq!(
            strings(&spring[1..3]),
            ["2027-03-14 06:00", "2027-03-14 07:00"]
        );
        let fall = runs_on(&s, "2027-11-07");
        assert_eq!(fall.len(), 24);
        // 01:00 runs once at 05:00 UTC (EDT); 02:00 EST = 07:00 UTC.
        assert_eq!(
            strings(&fall[1..3]),
            ["2027-11-07 05:00", "2027-11-07 07:00"]
        );
        assert_eq!(runs_on(&s, "2027-11-08").len(), 24);
    }

    #[test]
    fn every_6_hours_in_a_gap_moves_to_its_end() {
        let s = sched("every 6 hours", 2, 30, "Europe/Amsterdam");
        assert_eq!(
            strings(&runs_on(&s, "2027-03-28")),
            [
                "2027-03-28 01:00",
                "2027-03-28 06:30",
                "2027-03-28 12:30",
                "2027-03-28 18:30"
            ]
        );
    }

    #[test]
    fn start_at_midnight_and_one_minute_before() {
        let s = sched("daily", 0, 0, "Europe/Amsterdam");
        // Local midnight 2027-06-02 is 2027-06-01 22:00 UTC; exactly at it → the next day.
        assert_eq!(
            s.next_after(utc("2027-06-01T12:00:00Z")),
            utc("2027-06-01T22:00:00Z")
        );
        assert_eq!(
            s.next_after(utc("2027-06-01T22:00:00Z")),
            utc("2027-06-02T22:00:00Z")
        );
        let s = sched("daily", 23, 59, "UTC");
        assert_eq!(
            s.next_after(utc("2027-12-31T23:59:00Z")),
            utc("2028-01-01T23:59:00Z")
        );
        assert_eq!(
            s.next_after(utc("2027-12-31T23:58:59Z")),
            utc("2027-12-31T23:59:00Z")
        );
        // 23:59 in New York is the next UTC day.
        let s = sched("daily", 23, 59, "America/New_York");
        assert_eq!(
            s.next_after(utc("2027-01-01T12:00:00Z")),
            utc("2027-01-02T04:59:00Z")
        );
        assert_eq!(
            s.next_after(utc("2027-07-01T12:00:00Z")),
            utc("2027-07-02T03:59:00Z")
        );
    }

    #[test]
    fn between_windows() {
        let s = sched("daily", 2, 0, "UTC");
        let t = utc("2027-01-01T02:00:00Z");
        assert!(s.between(t, t).is_empty());
        assert!(s.between(t, t - TimeDelta::days(3)).is_empty());
        assert!(
            s.between(utc("2027-01-01T03:00:00Z"), utc("2027-01-02T01:59:59Z"))
                .is_empty()
        );
        // (from, to]: the run at `from` is excluded, the one at `to` included.
        assert_eq!(
            strings(&s.between(t, utc("2027-01-04T02:00:00Z"))),
            ["2027-01-02 02:00", "2027-01-03 02:00", "2027-01-04 02:00"]
        );
    }

    #[test]
    fn between_matches_upcoming_across_dst() {
        for (repeats, tz) in [
            ("hourly", "Europe/Amsterdam"),
            ("every 6 hours", "America/New_York"),
            ("daily", "Europe/Amsterdam"),
            ("monthly on 31", "America/New_York"),
        ] {
            let s = sched(repeats, 2, 30, tz);
            let from = utc("2027-03-01T00:00:00Z");
            let to = utc("2027-11-30T00:00:00Z");
            let window = s.between(from, to);
            assert!(
                window.windows(2).all(|w| w[0] < w[1]),
                "{repeats} {tz}: not strictly increasing"
            );
            let chained: Vec<_> = s
                .upcoming(from, window.len() + 1)
                .into_iter()
                .filter(|t| *t <= to)
                .collect();
            assert_eq!(window, chained, "{repeats} {tz}");
        }
    }

    #[test]
    fn extremes_do_not_panic() {
        let s = sched("hourly", 23, 59, "Pacific/Kiritimati");
        assert_eq!(
            s.next_after(DateTime::<Utc>::MAX_UTC),
            DateTime::<Utc>::MAX_UTC
        );
        assert!(
            s.upcoming(DateTime::<Utc>::MAX_UTC - TimeDelta::days(1), 100)
                .len()
                < 100
        );
        assert!(
            !s.between(
                DateTime::<Utc>::MAX_UTC - TimeDelta::days(2),
                DateTime::<Utc>::MAX_UTC
            )
            .is_empty()
        );
        assert!(s.next_after(DateTime::<Utc>::MIN_UTC) > DateTime::<Utc>::MIN_UTC);
        // Hand-built values the grammar never produces still behave.
        let never = Schedule {
            repeats: Repeats::Weekly(vec![]),
            ..s.clone()
        };
        assert_eq!(
            never.next_after(utc("2027-01-01T00:00:00Z")),
            DateTime::<Utc>::MAX_UTC
        );
        assert!(never.upcoming(utc("2027-01-01T00:00:00Z"), 3).is_empty());
        let zero = Schedule {
            repeats: Repeats::EveryHours(0),
            ..s
        };
        assert_eq!(zero.upcoming(utc("2027-01-01T00:00:00Z"), 3).len(), 3);
    }
}
