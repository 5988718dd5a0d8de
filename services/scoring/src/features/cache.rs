//! A per-process cache of the neighbourhood features (`social::Local`: degree, weighted
//! degrees, one- and two-hop bad rates), the costly part of a feature read (the two-hop
//! neighbourhood: ~150 parties for 50 contacts). Evaluate reads it first and the
//! neighbourhood only on a miss.
//!
//! Staleness (docs/scoring-features.md): an entry is dropped as soon as this process
//! commits a signal touching any party of the two-hop neighbourhood it was computed
//! from (an edge at either end, a repayment outcome: credit history and defaulter
//! status), and the whole cache when a PageRank refresh finishes; entries older than
//! the TTL are never served. Writes this process does not see (another replica's
//! IngestSignals, events applied by another replica's consumer) are therefore
//! reflected within the TTL at the latest; this process's own are reflected at once.
//! Entries computed from a read that an invalidation overtook are not stored (a
//! generation counter), so an entry never outlives a change it missed by more than
//! the TTL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::social::{Local, Neighbourhood};

/// Most entries kept; a full cache starts over (simple and bounded: one entry per
/// evaluated customer, and the watch lists grow with them).
pub const ENTRIES_MAX: usize = 100_000;
/// Most (party, watcher) pairs kept in the reverse index (~150 per entry); past it the
/// cache starts over.
const WATCHES_MAX: usize = 5_000_000;

#[derive(Debug)]
struct Entry {
    local: Local,
    stored: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Party → centres whose neighbourhood includes it (stale centres are harmless:
    /// invalidating a missing entry does nothing).
    watchers: HashMap<String, Vec<String>>,
    watches: usize,
    /// Bumped by every invalidation; an entry read before a bump is not stored.
    generation: u64,
}

/// See the module docs. Cheap to clone (shared). The default keeps nothing.
#[derive(Debug, Clone, Default)]
pub struct GraphCache {
    ttl: Duration,
    inner: Arc<Mutex<Inner>>,
}

/// Where a read stood when it started: hand it back to [`GraphCache::store`].
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

impl GraphCache {
    /// A zero `ttl` disables the cache (every read goes to Postgres).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            inner: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain maps behind: keep using them.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached features of `party`, or a ticket for storing them after a read.
    pub fn get(&self, party: &str) -> Result<Local, Ticket> {
        let inner = self.lock();
        match inner.entries.get(party) {
            Some(entry) if !self.ttl.is_zero() && entry.stored.elapsed() < self.ttl => {
                Ok(entry.local.clone())
            }
            _ => Err(Ticket(inner.generation)),
        }
    }

    /// Keeps `local`, computed from `hood` read after `ticket` was taken, unless an
    /// invalidation came in between.
    pub fn store(&self, ticket: Ticket, hood: &Neighbourhood, local: &Local) {
        if self.ttl.is_zero() {
            return;
        }
        let mut inner = self.lock();
        if inner.generation != ticket.0 {
            return;
        }
        let members: Vec<&str> = std::iter::once(hood.center.as_str())
            .chain(hood.neighbours.iter().map(|(id, _)| id.as_str()))
            .chain(hood.second.iter().map(|(_, far)| far.as_str()))
            .collect();
        if inner.entries.len() >= ENTRIES_MAX || inner.watches + members.len() > WATCHES_MAX {
            inner.entries.clear();
            inner.watchers.clear();
            inner.watches = 0;
        }
        inner.watches += members.len();
        for member in members {
            inner
                .watchers
                .entry(member.to_owned())
                .or_default()
                .push(hood.center.clone());
        }
        inner.entries.insert(
            hood.center.clone(),
            Entry {
                local: local.clone(),
                stored: Instant::now(),
            },
        );
    }

    /// Drops every entry whose neighbourhood includes one of `parties`. Call after the
    /// change committed.
    pub fn invalidate<'a>(&self, parties: impl IntoIterator<Item = &'a str>) {
        let mut inner = self.lock();
        inner.generation += 1;
        for party in parties {
            if let Some(centres) = inner.watchers.remove(party) {
                inner.watches = inner.watches.saturating_sub(centres.len());
                for centre in centres {
                    inner.entries.remove(&centre);
                }
            }
        }
    }

    /// Drops everything (a PageRank refresh finished: its seeds are the defaulters the
    /// bad rates count too).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.clear();
        inner.watchers.clear();
        inner.watches = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::social::{KindWeights, local_features};

    fn hood(center: &str, neighbours: &[&str], second: &[(&str, &str)]) -> Neighbourhood {
        Neighbourhood {
            center: center.into(),
            neighbours: neighbours
                .iter()
                .map(|id| ((*id).to_owned(), KindWeights::default()))
                .collect(),
            second: second
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
            history: HashMap::new(),
        }
    }

    #[test]
    fn a_change_anywhere_in_the_two_hop_neighbourhood_drops_the_entry_only() {
        let cache = GraphCache::new(Duration::from_secs(60));
        let c = hood("c", &["a"], &[("a", "far")]);
        let d = hood("d", &["x"], &[]);
        for h in [&c, &d] {
            let ticket = cache.get(&h.center).expect_err("empty");
            cache.store(ticket, h, &local_features(h));
        }
        assert_eq!(cache.get("c").expect("cached").degree, 1.0);
        cache.invalidate(["unrelated"]);
        assert!(cache.get("c").is_ok() && cache.get("d").is_ok());
        cache.invalidate(["far"]);
        assert!(cache.get("c").is_err(), "a two-hop party changed");
        assert!(cache.get("d").is_ok());
        cache.clear();
        assert!(cache.get("d").is_err());
    }

    #[test]
    fn a_read_overtaken_by_an_invalidation_is_not_stored() {
        let cache = GraphCache::new(Duration::from_secs(60));
        let c = hood("c", &["a"], &[]);
        let ticket = cache.get("c").expect_err("empty");
        cache.invalidate(["a"]);
        cache.store(ticket, &c, &local_features(&c));
        assert!(cache.get("c").is_err());
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let cache = GraphCache::new(Duration::ZERO);
        let c = hood("c", &[], &[]);
        let ticket = cache.get("c").expect_err("empty");
        cache.store(ticket, &c, &local_features(&c));
        assert!(cache.get("c").is_err());
    }
}
