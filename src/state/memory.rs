//! The in-process implementation of [`Coordination`]: target locks, rate limits and the
//! registry of running actions of one process. A lock must die with the process that holds it,
//! so memory is the right home for one replica; several replicas need a shared implementation
//! (a database with leases) of the same trait.

use super::{Claim, Coordination, Start};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Entry {
    claim: Claim,
    started: Instant,
    cancel: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Coordination within one process.
#[derive(Default)]
pub struct Local {
    running: Mutex<HashMap<String, Entry>>,
    /// Event times in the last minute, by (bucket, key).
    rate: Mutex<HashMap<(String, String), VecDeque<Instant>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether two lock targets ("service/env", "*" matching anything) touch the same thing.
pub fn overlaps(a: &str, b: &str) -> bool {
    let (pa, pb): (Vec<&str>, Vec<&str>) = (a.split('/').collect(), b.split('/').collect());
    pa.len() == pb.len()
        && pa
            .iter()
            .zip(&pb)
            .all(|(x, y)| x == y || *x == "*" || *y == "*")
}

impl Local {
    fn count(&self, bucket: &str, key: &str, per_minute: u32) -> bool {
        let mut rate = lock(&self.rate);
        let q = rate
            .entry((bucket.to_string(), key.to_string()))
            .or_default();
        let now = Instant::now();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            q.pop_front();
        }
        if q.len() >= per_minute as usize {
            return false;
        }
        q.push_back(now);
        true
    }
}

impl Coordination for Local {
    fn start(&self, claim: Claim, per_minute: u32) -> anyhow::Result<Start> {
        // one critical section: two requests for the same target cannot both pass the check
        let mut running = lock(&self.running);
        if let Some(t) = &claim.target {
            let holder = running
                .values()
                .find(|e| e.claim.target.as_ref().is_some_and(|o| overlaps(o, t)));
            if let Some(e) = holder {
                return Ok(Start::Busy(e.claim.clone()));
            }
        }
        // the rate limit counts actions that start, so it is checked last
        if !self.count(super::ACTIONS, &claim.requester, per_minute) {
            return Ok(Start::RateLimited);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        running.insert(
            claim.id.clone(),
            Entry {
                claim,
                started: Instant::now(),
                cancel: Some(tx),
            },
        );
        Ok(Start::Started(rx))
    }

    fn finish(&self, id: &str) -> anyhow::Result<()> {
        lock(&self.running).remove(id);
        Ok(())
    }

    fn running_in(&self, conversation: &str) -> anyhow::Result<Vec<Claim>> {
        let running = lock(&self.running);
        let mut here: Vec<&Entry> = running
            .values()
            .filter(|e| e.claim.conversation == conversation)
            .collect();
        here.sort_by_key(|e| std::cmp::Reverse(e.started));
        Ok(here.into_iter().map(|e| e.claim.clone()).collect())
    }

    fn cancel(&self, id: &str) -> anyhow::Result<Option<bool>> {
        let mut running = lock(&self.running);
        let Some(e) = running.get_mut(id) else {
            return Ok(None);
        };
        Ok(Some(e.cancel.take().is_some_and(|tx| tx.send(()).is_ok())))
    }

    fn admit(&self, bucket: &str, key: &str, per_minute: u32) -> anyhow::Result<bool> {
        Ok(self.count(bucket, key, per_minute))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(id: &str, conv: &str, target: Option<&str>) -> Claim {
        Claim {
            id: id.into(),
            requester: "u1".into(),
            conversation: conv.into(),
            intent: "restart".into(),
            target: target.map(Into::into),
            what: format!("job {id}"),
        }
    }

    #[test]
    fn an_overlapping_target_is_busy_until_the_holder_finishes() {
        let c = Local::default();
        assert!(matches!(
            c.start(claim("a", "c1", Some("api/production")), 10)
                .unwrap(),
            Start::Started(_)
        ));
        match c.start(claim("b", "c1", Some("*/production")), 10).unwrap() {
            Start::Busy(holder) => assert_eq!(holder.id, "a"),
            _ => panic!("a wildcard over a held target must be busy"),
        }
        // another environment and a read (no target) are free
        assert!(matches!(
            c.start(claim("c", "c1", Some("api/staging")), 10).unwrap(),
            Start::Started(_)
        ));
        assert!(matches!(
            c.start(claim("d", "c1", None), 10).unwrap(),
            Start::Started(_)
        ));
        c.finish("a").unwrap();
        assert!(matches!(
            c.start(claim("e", "c1", Some("api/production")), 10)
                .unwrap(),
            Start::Started(_)
        ));
    }

    #[test]
    fn the_rate_limit_counts_only_actions_that_start() {
        let c = Local::default();
        assert!(matches!(
            c.start(claim("a", "c1", Some("x/y")), 2).unwrap(),
            Start::Started(_)
        ));
        // busy: not counted
        assert!(matches!(
            c.start(claim("b", "c1", Some("x/y")), 2).unwrap(),
            Start::Busy(_)
        ));
        assert!(matches!(
            c.start(claim("c", "c1", None), 2).unwrap(),
            Start::Started(_)
        ));
        assert!(matches!(
            c.start(claim("d", "c1", None), 2).unwrap(),
            Start::RateLimited
        ));
        // another bucket has its own count
        assert!(c.admit("probes", "u1", 2).unwrap());
    }

    #[test]
    fn cancel_reaches_the_runner_once_and_lists_are_newest_first() {
        let c = Local::default();
        let Start::Started(mut rx) = c.start(claim("a", "c1", None), 10).unwrap() else {
            panic!()
        };
        std::thread::sleep(Duration::from_millis(2));
        let _b = c.start(claim("b", "c1", None), 10).unwrap();
        let _x = c.start(claim("x", "c2", None), 10).unwrap();
        let ids: Vec<String> = c
            .running_in("c1")
            .unwrap()
            .into_iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(ids, ["b", "a"]);
        assert_eq!(c.cancel("a").unwrap(), Some(true));
        assert!(rx.try_recv().is_ok());
        assert_eq!(c.cancel("a").unwrap(), Some(false), "asked twice");
        assert_eq!(c.cancel("gone").unwrap(), None);
    }
}
