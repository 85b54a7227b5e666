//! Virtual keys and teams over every replica. Redis holds every key record by its digest
//! (`hermes:keys`), every team (`hermes:teams`) and a version that any change bumps
//! (`hermes:book`). Each replica polls the version every 250 ms and merges what changed (a
//! revocation on one replica refuses on the others within that), and looks up an `hk-` key it
//! does not know yet before refusing it (a key made on another replica a moment ago). Records
//! are never secrets: a key is there as its SHA-256 only.

use super::{Down, Replicas};
use crate::state::analytics::{Analytics, Event};
use crate::state::keys::{KeyBook, KeyRecord, TeamRecord};
use redis::AsyncCommands;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const KEYS: &str = "hermes:keys";
const TEAMS: &str = "hermes:teams";
const VERSION: &str = "hermes:book";

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

impl Replicas {
    /// A key made or revoked here, for every replica.
    pub async fn publish_key(&self, k: &KeyRecord) -> Result<(), Down> {
        self.publish(KEYS, k.digest.clone(), json(k)).await
    }

    /// A team made or changed here, for every replica.
    pub async fn publish_team(&self, t: &TeamRecord) -> Result<(), Down> {
        self.publish(TEAMS, t.name.clone(), json(t)).await
    }

    /// One record into its table, and the version bumped, at once.
    async fn publish(&self, table: &'static str, field: String, record: String) -> Result<(), Down> {
        self.call(|mut c| async move { redis::pipe().atomic().hset(table, field, record).ignore().incr(VERSION, 1).ignore().query_async(&mut c).await }).await
    }

    /// A key this replica does not know, by its digest: true when Redis knew it (it is now in
    /// `book`, revoked or not).
    pub async fn lookup(&self, book: &KeyBook, analytics: &Analytics, digest: &str) -> Result<bool, Down> {
        let digest = digest.to_string();
        let found: Option<String> = self.call(|mut c| async move { c.hget(KEYS, digest).await }).await?;
        let Some(record) = found.and_then(|j| serde_json::from_str::<KeyRecord>(&j).ok()) else { return Ok(false) };
        learned_key(book, analytics, record);
        Ok(true)
    }
}

fn learned_key(book: &KeyBook, analytics: &Analytics, k: KeyRecord) {
    if book.merge(k.clone()) && !analytics.offer(Event::Key(Arc::new(k))) {
        log::warn!("a key from another replica is in force here but could not be queued for the analytics file");
    }
}

/// Keeps this replica's keys and teams in step with Redis: every 250 ms the version is read;
/// when it moved (or Redis came back, perhaps empty) both tables are merged both ways.
pub async fn follow(replicas: Arc<Replicas>, book: Arc<KeyBook>, analytics: Analytics) {
    let mut seen: Option<i64> = None;
    let mut was_up = true;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let up = replicas.up();
        if !up {
            was_up = false;
            continue;
        }
        if !was_up {
            // Redis may have restarted empty, or missed changes made while it was away.
            seen = None;
            was_up = true;
        }
        let version: Result<Option<i64>, Down> = replicas.call(|mut c| async move { c.get(VERSION).await }).await;
        let Ok(version) = version else { continue };
        if version.is_some() && version == seen {
            continue;
        }
        if exchange(&replicas, &book, &analytics).await.is_ok() {
            seen = version;
        }
    }
}

/// Merges Redis's keys and teams into the book, and puts there what only this replica has.
async fn exchange(replicas: &Replicas, book: &KeyBook, analytics: &Analytics) -> Result<(), Down> {
    let (keys, teams): (HashMap<String, String>, HashMap<String, String>) =
        replicas.call(|mut c| async move { redis::pipe().hgetall(KEYS).hgetall(TEAMS).query_async(&mut c).await }).await?;
    for t in teams.values().filter_map(|j| serde_json::from_str::<TeamRecord>(j).ok()) {
        if book.merge_team(t.clone()) && !analytics.offer(Event::Team(Arc::new(t))) {
            log::warn!("a team from another replica could not be queued for the analytics file");
        }
    }
    let remote: HashMap<String, KeyRecord> = keys.into_iter().filter_map(|(d, j)| serde_json::from_str(&j).ok().map(|k| (d, k))).collect();
    // Older keys first, so that of two with one name the newer stands.
    let mut incoming: Vec<&KeyRecord> = remote.values().collect();
    incoming.sort_by_key(|k| k.created_at);
    for k in incoming {
        learned_key(book, analytics, k.clone());
    }
    let mut missing = redis::pipe();
    let mut any = false;
    for k in book.keys() {
        let behind = remote.get(&k.digest).is_none_or(|r| r.revoked_at.is_none() && k.revoked_at.is_some());
        if behind {
            missing.hset(KEYS, k.digest.clone(), json(&*k)).ignore();
            any = true;
        }
    }
    for t in book.teams() {
        if !teams.contains_key(&t.name) {
            missing.hset(TEAMS, t.name.clone(), json(&*t)).ignore();
            any = true;
        }
    }
    if any {
        missing.incr(VERSION, 1).ignore();
        replicas.call(|mut c| async move { missing.query_async::<()>(&mut c).await }).await?;
    }
    Ok(())
}
