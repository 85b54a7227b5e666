//! Virtual keys (`hk-...`) and teams: who a client is, what it may use, and what it has spent.
//! A key is shown once when it is made and kept as a SHA-256 digest; its name is what logs,
//! metrics and the analytics file carry. Budgets are held by reservation: a request reserves its
//! estimated cost before it is sent and settles with the real one when it ends, so concurrent
//! requests cannot together spend more than what is left.

use crate::state::{lock, read, write};
use chrono::{DateTime, Datelike, Duration as Days, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// What a budget's spend is counted over: calendar windows in UTC, so that everyone (and every
/// replica) agrees on when one resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Day,
    Week,
    #[default]
    Month,
}

impl Window {
    pub fn parse(s: &str) -> Option<Window> {
        match s {
            "day" => Some(Window::Day),
            "week" => Some(Window::Week),
            "month" => Some(Window::Month),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Day => "day",
            Window::Week => "week",
            Window::Month => "month",
        }
    }

    /// The window holding `at`: its first second and the first second after it.
    pub fn around(self, at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let day = Utc.from_utc_datetime(&at.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default());
        match self {
            Window::Day => (day, day + Days::days(1)),
            Window::Week => {
                let monday = day - Days::days(i64::from(at.weekday().num_days_from_monday()));
                (monday, monday + Days::days(7))
            }
            Window::Month => {
                let first = day - Days::days(i64::from(at.day0()));
                let (y, m) = if at.month() == 12 { (at.year() + 1, 1) } else { (at.year(), at.month() + 1) };
                let next = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().unwrap_or(first + Days::days(31));
                (first, next)
            }
        }
    }
}

/// What a spent key does: `refuse` stops it (402) until the window resets; `local` keeps it
/// working on free local backends only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnBudget {
    #[default]
    Refuse,
    Local,
}

impl OnBudget {
    pub fn parse(s: &str) -> Option<OnBudget> {
        match s {
            "refuse" => Some(OnBudget::Refuse),
            "local" => Some(OnBudget::Local),
            _ => None,
        }
    }
}

/// A budget in US cents per window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub cents: f64,
    pub window: Window,
}

impl Budget {
    /// What is left of it once `spent` cents are spent (never below nothing).
    pub fn left_after(&self, spent: f64) -> f64 {
        (self.cents - spent).max(0.0)
    }
}

/// A key's settings, as `hermes keys create` and `POST /admin/keys` give them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct KeySpec {
    pub name: String,
    pub team: Option<String>,
    pub budget: Option<Budget>,
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Prompt plus completion tokens per minute.
    pub tpm: Option<u32>,
    /// Models it may ask for by name (empty: any); `auto` is always allowed.
    pub models: Vec<String>,
    /// Everything it sends stays on local backends.
    pub privacy_local: bool,
    pub on_budget: OnBudget,
}

/// A key as kept: its settings and digest, never the key itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub spec: KeySpec,
    pub digest: String,
    /// Unix seconds.
    pub created_at: u64,
    pub revoked_at: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamRecord {
    pub name: String,
    pub budget: Option<Budget>,
    pub created_at: u64,
}

/// The SHA-256 of a key, in hex: how a key is found without being kept.
pub fn digest(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// What every virtual key starts with.
pub const VIRTUAL_PREFIX: &str = "hk-";

/// A new key: `hk-` and 32 random bytes.
pub fn new_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    format!("{VIRTUAL_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Names that logs, metrics and URLs can carry as they are.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("{what} name '{name}' must be 1 to 64 letters, digits, '-', '_' or '.'"))
    }
}

/// Whose spend a figure is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Key(String),
    Team(String),
}

impl Scope {
    pub fn name(&self) -> &str {
        match self {
            Scope::Key(n) | Scope::Team(n) => n,
        }
    }
}

/// One scope's spend in its current window, and what requests in flight here have reserved.
/// With several replicas, `mine` is this replica's share (what its analytics file holds) and
/// `others` what the rest had spent when Redis last said.
#[derive(Debug, Clone, Copy, Default)]
struct Account {
    window_start: i64,
    mine: f64,
    others: f64,
    reserved: f64,
}

impl Account {
    fn spent(&self) -> f64 {
        self.mine + self.others
    }
}

/// A request's hold on its key's and team's budgets, given back by `settle`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    /// Unique in this process: with this replica's name, the hold's name in Redis.
    pub id: u64,
    pub scopes: Vec<(Scope, Budget)>,
    pub cents: f64,
}

/// Why a request cannot spend: whose budget, and when it is whole again.
#[derive(Debug, Clone, PartialEq)]
pub struct Exhausted {
    pub scope: Scope,
    pub budget_cents: f64,
    /// What is left once the requests in flight have their holds (0 when spent).
    pub left_cents: f64,
    /// What this request would have held.
    pub needed_cents: f64,
    pub resets_at: DateTime<Utc>,
}

/// Every key and team, and the spend of each.
#[derive(Default)]
pub struct KeyBook {
    book: RwLock<Book>,
    /// Whether any key is live, read on every request of an open gateway without a lock.
    live: std::sync::atomic::AtomicBool,
    accounts: Mutex<HashMap<Scope, Account>>,
    holds: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Book {
    by_digest: HashMap<String, Arc<KeyRecord>>,
    by_name: HashMap<String, Arc<KeyRecord>>,
    teams: HashMap<String, Arc<TeamRecord>>,
}

impl KeyBook {
    /// The book as the analytics file left it: keys, teams and each scope's spend since
    /// `spent_since` (per scope, the spend of the window holding now).
    pub fn restored(keys: Vec<KeyRecord>, teams: Vec<TeamRecord>, spent: Vec<(Scope, f64)>) -> KeyBook {
        let book = KeyBook::default();
        for t in teams {
            write(&book.book).teams.insert(t.name.clone(), Arc::new(t));
        }
        for k in keys {
            book.insert(k);
        }
        let now = Utc::now();
        let mut accounts = lock(&book.accounts);
        for (scope, cents) in spent {
            if let Some(window) = book.budget_of(&scope).map(|b| b.window) {
                accounts.insert(scope, Account { window_start: window.around(now).0.timestamp(), mine: cents, ..Account::default() });
            }
        }
        drop(accounts);
        book
    }

    fn insert(&self, k: KeyRecord) {
        let k = Arc::new(k);
        let mut book = write(&self.book);
        if let Some(old) = book.by_name.insert(k.spec.name.clone(), k.clone()) {
            book.by_digest.remove(&old.digest);
        }
        book.by_digest.insert(k.digest.clone(), k);
        self.live.store(book.by_name.values().any(|k| k.revoked_at.is_none()), std::sync::atomic::Ordering::Relaxed);
    }

    /// A live (unrevoked) key by its secret.
    pub fn find(&self, secret: &str) -> Option<Arc<KeyRecord>> {
        read(&self.book).by_digest.get(&digest(secret)).filter(|k| k.revoked_at.is_none()).cloned()
    }

    /// Whether any key is live (the gateway is then closed to callers without one).
    pub fn any_live(&self) -> bool {
        self.live.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn named(&self, name: &str) -> Option<Arc<KeyRecord>> {
        read(&self.book).by_name.get(name).cloned()
    }

    pub fn keys(&self) -> Vec<Arc<KeyRecord>> {
        let mut keys: Vec<_> = read(&self.book).by_name.values().cloned().collect();
        keys.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        keys
    }

    pub fn teams(&self) -> Vec<Arc<TeamRecord>> {
        let mut teams: Vec<_> = read(&self.book).teams.values().cloned().collect();
        teams.sort_by(|a, b| a.name.cmp(&b.name));
        teams
    }

    pub fn team(&self, name: &str) -> Option<Arc<TeamRecord>> {
        read(&self.book).teams.get(name).cloned()
    }

    /// A new key from its settings: the record to keep and the secret to show once.
    pub fn create(&self, spec: KeySpec) -> Result<(KeyRecord, String), String> {
        check_name("key", &spec.name)?;
        if let Some(team) = &spec.team {
            if self.team(team).is_none() {
                return Err(format!("there is no team '{team}' (create it first with `hermes teams create`)"));
            }
        }
        if self.named(&spec.name).is_some_and(|k| k.revoked_at.is_none()) {
            return Err(format!("a key named '{}' exists; revoke it first or choose another name", spec.name));
        }
        let secret = new_secret();
        let record = KeyRecord { spec, digest: digest(&secret), created_at: Utc::now().timestamp().max(0) as u64, revoked_at: None };
        self.insert(record.clone());
        Ok((record, secret))
    }

    /// Revokes the named key at once; the record stays, to show what it spent.
    pub fn revoke(&self, name: &str) -> Option<KeyRecord> {
        let mut k = (*self.named(name)?).clone();
        if k.revoked_at.is_none() {
            k.revoked_at = Some(Utc::now().timestamp().max(0) as u64);
        }
        self.insert(k.clone());
        Some(k)
    }

    pub fn create_team(&self, name: &str, budget: Option<Budget>) -> Result<TeamRecord, String> {
        check_name("team", name)?;
        let created_at = self.team(name).map_or(Utc::now().timestamp().max(0) as u64, |t| t.created_at);
        let team = TeamRecord { name: name.to_string(), budget, created_at };
        write(&self.book).teams.insert(name.to_string(), Arc::new(team.clone()));
        Ok(team)
    }

    /// A key as another replica has it (through Redis); true when that changed what is known
    /// here. A revocation is final; of two keys with one name, the newer stands.
    pub fn merge(&self, k: KeyRecord) -> bool {
        let newer = match self.named(&k.spec.name) {
            None => true,
            Some(c) if c.digest == k.digest => c.revoked_at.is_none() && k.revoked_at.is_some(),
            Some(c) => (k.created_at, &k.digest) > (c.created_at, &c.digest),
        };
        if newer {
            self.insert(k);
        }
        newer
    }

    /// A team as another replica has it; true when it differs from what is known here.
    pub fn merge_team(&self, t: TeamRecord) -> bool {
        let changed = self.team(&t.name).is_none_or(|known| *known != t);
        if changed {
            write(&self.book).teams.insert(t.name.clone(), Arc::new(t));
        }
        changed
    }

    fn budget_of(&self, scope: &Scope) -> Option<Budget> {
        match scope {
            Scope::Key(n) => self.named(n).and_then(|k| k.spec.budget),
            Scope::Team(n) => self.team(n).and_then(|t| t.budget),
        }
    }

    fn scopes_of(key: &KeySpec) -> Vec<Scope> {
        std::iter::once(Scope::Key(key.name.clone())).chain(key.team.clone().map(Scope::Team)).collect()
    }

    /// The account of `scope` in the window holding now (a new window starts from nothing spent).
    fn account<'a>(accounts: &'a mut HashMap<Scope, Account>, scope: &Scope, budget: Budget, now: DateTime<Utc>) -> &'a mut Account {
        let start = budget.window.around(now).0.timestamp();
        let a = accounts.entry(scope.clone()).or_default();
        if a.window_start != start {
            *a = Account { window_start: start, reserved: a.reserved, ..Account::default() };
        }
        a
    }

    /// The budgets over a key: its own and its team's, where they have one.
    pub fn budgets_over(&self, key: &KeySpec) -> Vec<(Scope, Budget)> {
        KeyBook::scopes_of(key).into_iter().filter_map(|s| self.budget_of(&s).map(|b| (s, b))).collect()
    }

    /// Why `cents` more cannot be spent in a scope that has spent `spent` with `held` on hold
    /// (None: it can). Free requests (`cents == 0`) are refused only once a `refuse` key has
    /// spent it all.
    pub fn refusal(scope: &Scope, budget: Budget, spent: f64, held: f64, cents: f64, on_budget: OnBudget) -> Option<Exhausted> {
        let spent_out = spent >= budget.cents;
        let over = cents > 0.0 && spent + held + cents > budget.cents;
        (over || (spent_out && on_budget == OnBudget::Refuse)).then(|| KeyBook::exhausted(scope, budget, spent, held, cents))
    }

    /// The refusal of `cents` in a scope that has spent `spent` with `held` on hold.
    pub fn exhausted(scope: &Scope, budget: Budget, spent: f64, held: f64, cents: f64) -> Exhausted {
        Exhausted {
            scope: scope.clone(),
            budget_cents: budget.cents,
            left_cents: (budget.cents - spent - held).max(0.0),
            needed_cents: cents,
            resets_at: budget.window.around(Utc::now()).1,
        }
    }

    /// Holds `cents` against the key's budget and its team's, all or nothing, by what this
    /// process knows (one replica, or Redis away).
    pub fn reserve(&self, key: &KeySpec, cents: f64) -> Result<Reservation, Exhausted> {
        let now = Utc::now();
        let budgets = self.budgets_over(key);
        let mut accounts = lock(&self.accounts);
        for (scope, budget) in &budgets {
            let a = KeyBook::account(&mut accounts, scope, *budget, now);
            if let Some(e) = KeyBook::refusal(scope, *budget, a.spent(), a.reserved, cents, key.on_budget) {
                return Err(e);
            }
        }
        drop(accounts);
        Ok(self.hold(self.next_hold(), budgets, cents))
    }

    /// Hold `id` (from `next_hold`), granted by Redis or checked by `reserve`, counted here too
    /// so that this replica goes on holding it if Redis goes away.
    pub fn hold(&self, id: u64, scopes: Vec<(Scope, Budget)>, cents: f64) -> Reservation {
        let now = Utc::now();
        let mut accounts = lock(&self.accounts);
        for (scope, budget) in &scopes {
            KeyBook::account(&mut accounts, scope, *budget, now).reserved += cents;
        }
        Reservation { id, scopes, cents }
    }

    /// A name for the next hold.
    pub fn next_hold(&self) -> u64 {
        self.holds.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// The request cost `cents`: its hold is given back and the cost spent. Returns what is left
    /// of the tightest of its budgets, read in the same step, so that of answers settling at once
    /// the last one counts every other (None: no budget held).
    pub fn settle(&self, r: &Reservation, cents: f64) -> Option<f64> {
        let now = Utc::now();
        let mut accounts = lock(&self.accounts);
        r.scopes
            .iter()
            .map(|(scope, budget)| {
                let a = KeyBook::account(&mut accounts, scope, *budget, now);
                a.reserved = (a.reserved - r.cents).max(0.0);
                a.mine += cents;
                budget.left_after(a.spent())
            })
            .reduce(f64::min)
    }

    /// This replica's share of a scope's spend in the window holding now.
    pub fn mine(&self, scope: &Scope, budget: Budget) -> f64 {
        KeyBook::account(&mut lock(&self.accounts), scope, budget, Utc::now()).mine
    }

    /// Every scope with a budget.
    pub fn budgeted(&self) -> Vec<(Scope, Budget)> {
        let book = read(&self.book);
        let keys = book.by_name.values().filter_map(|k| k.spec.budget.map(|b| (Scope::Key(k.spec.name.clone()), b)));
        let teams = book.teams.values().filter_map(|t| t.budget.map(|b| (Scope::Team(t.name.clone()), b)));
        keys.chain(teams).collect()
    }

    /// What Redis says the scope has spent in the window starting at `window_start`, over
    /// every replica: the part that is not this replica's is the others'.
    pub fn heard(&self, scope: &Scope, budget: Budget, window_start: i64, total: f64) {
        let mut accounts = lock(&self.accounts);
        let a = KeyBook::account(&mut accounts, scope, budget, Utc::now());
        if a.window_start == window_start {
            a.others = (total - a.mine).max(0.0);
        }
    }

    /// Spend in the current window, and the budget, of a scope that has one.
    pub fn spend(&self, scope: &Scope) -> Option<(f64, Budget)> {
        let budget = self.budget_of(scope)?;
        let mut accounts = lock(&self.accounts);
        Some((KeyBook::account(&mut accounts, scope, budget, Utc::now()).spent(), budget))
    }

    /// What is left of the tightest budget over the key and its team (None: no budget).
    pub fn remaining(&self, key: &KeySpec) -> Option<f64> {
        KeyBook::scopes_of(key).iter().filter_map(|s| self.spend(s).map(|(spent, b)| b.left_after(spent))).reduce(f64::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book_with(budget_cents: f64, on_budget: OnBudget) -> (KeyBook, KeySpec) {
        let book = KeyBook::default();
        book.create_team("core", Some(Budget { cents: 1000.0, window: Window::Month })).unwrap();
        let spec = KeySpec {
            name: "ci-bot".into(),
            team: Some("core".into()),
            budget: Some(Budget { cents: budget_cents, window: Window::Day }),
            on_budget,
            ..KeySpec::default()
        };
        let (record, secret) = book.create(spec.clone()).unwrap();
        assert!(secret.starts_with("hk-") && secret.len() > 40);
        assert_eq!(record.digest, digest(&secret));
        assert_eq!(book.find(&secret).map(|k| k.spec.name.clone()), Some("ci-bot".into()));
        (book, spec)
    }

    #[test]
    fn reservations_never_let_concurrent_requests_overspend() {
        let (book, spec) = book_with(10.0, OnBudget::Refuse);
        let held: Vec<_> = (0..40).filter_map(|_| book.reserve(&spec, 1.0).ok()).collect();
        assert_eq!(held.len(), 10, "ten one-cent holds fit in ten cents");
        // Each settlement says what is left counting every one before it: the last says 5.
        let left: Vec<_> = held.iter().map(|r| book.settle(r, 0.5)).collect();
        assert_eq!(left.first(), Some(&Some(9.5)));
        assert_eq!(left.last(), Some(&Some(5.0)));
        assert_eq!(book.remaining(&spec), Some(5.0));
        let more: Vec<_> = (0..40).filter_map(|_| book.reserve(&spec, 1.0).ok()).collect();
        assert_eq!(more.len(), 5);
        for r in &more {
            book.settle(r, 1.0);
        }
        let e = book.reserve(&spec, 0.0).unwrap_err();
        assert_eq!(e.scope, Scope::Key("ci-bot".into()));
        assert!(e.resets_at > Utc::now());
    }

    #[test]
    fn a_local_key_keeps_its_free_requests_and_a_team_budget_binds_its_keys() {
        let (book, spec) = book_with(1.0, OnBudget::Local);
        let r = book.reserve(&spec, 1.0).unwrap();
        book.settle(&r, 1.0);
        assert!(book.reserve(&spec, 0.01).is_err());
        assert!(book.reserve(&spec, 0.0).is_ok(), "free requests go on");
        let other = KeySpec { name: "other".into(), team: Some("core".into()), ..KeySpec::default() };
        book.create(other.clone()).unwrap();
        let r = book.reserve(&other, 999.0).unwrap();
        book.settle(&r, 999.0);
        let e = book.reserve(&other, 2.0).unwrap_err();
        assert_eq!(e.scope, Scope::Team("core".into()));
        assert_eq!(book.spend(&Scope::Team("core".into())).map(|s| s.0), Some(1000.0));
    }

    #[test]
    fn revoked_keys_are_not_found_and_names_are_checked() {
        let (book, _) = book_with(1.0, OnBudget::Refuse);
        let (_, secret) = book.create(KeySpec { name: "temp".into(), ..KeySpec::default() }).unwrap();
        assert!(book.find(&secret).is_some());
        book.revoke("temp").unwrap();
        assert!(book.find(&secret).is_none());
        assert!(book.create(KeySpec { name: "bad name".into(), ..KeySpec::default() }).is_err());
        assert!(book.create(KeySpec { name: "x".into(), team: Some("nope".into()), ..KeySpec::default() }).is_err());
    }

    #[test]
    fn windows_are_calendar_windows_in_utc() {
        let at = Utc.with_ymd_and_hms(2026, 12, 31, 15, 4, 5).unwrap(); // a Thursday
        assert_eq!(Window::Day.around(at), (Utc.with_ymd_and_hms(2026, 12, 31, 0, 0, 0).unwrap(), Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()));
        assert_eq!(Window::Week.around(at).0, Utc.with_ymd_and_hms(2026, 12, 28, 0, 0, 0).unwrap());
        assert_eq!(Window::Month.around(at), (Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(), Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()));
    }
}
