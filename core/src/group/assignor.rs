//! Server-side partition assignors of the KIP-848 consumer protocol: `uniform` (the default)
//! and `range`. Both are pure functions of the members' subscriptions, the subscribed
//! topics' partition counts and (for `uniform`) the previous target assignment.
//!
//! - `uniform` spreads every subscribed partition over the members subscribed to its topic,
//!   keeping each partition where it was in the previous target when that stays balanced,
//!   then moving partitions from the most to the least loaded members until no move helps.
//!   With identical subscriptions the counts differ by at most one.
//! - `range` works topic by topic, as the classic `RangeAssignor`: the members subscribed to a
//!   topic, sorted by member id, take consecutive ranges of its partitions; the first
//!   `partitions % members` of them take one more.
//!
//! Nothing here knows about epochs or reconciliation (see [`super::consumer`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::codec::{KStr, Uuid};

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// A subscribed topic as the assignor sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    /// Its id.
    pub id: Uuid,
    /// How many partitions it has.
    pub partitions: u32,
}

/// The assignors kelp has, in the default order of `group-consumer-assignors` (Kafka:
/// `group.consumer.assignors`); which of them a broker serves is `Config::group_consumer_assignors`.
pub const ASSIGNORS: [&str; 2] = ["uniform", "range"];

/// The target assignment for `members` (member id -> subscribed topic names) with the named
/// assignor (`range`, otherwise `uniform`). Topics missing from `topics` are ignored.
#[must_use]
pub fn assign(
    assignor: &str,
    members: &BTreeMap<KStr, Vec<KStr>>,
    topics: &BTreeMap<KStr, TopicInfo>,
    previous: &BTreeMap<KStr, Assignment>,
) -> BTreeMap<KStr, Assignment> {
    if assignor == "range" { range(members, topics) } else { uniform(members, topics, previous) }
}

/// Members subscribed to each topic, in member id order.
fn subscribers<'a>(
    members: &'a BTreeMap<KStr, Vec<KStr>>,
    topics: &BTreeMap<KStr, TopicInfo>,
) -> BTreeMap<Uuid, (u32, Vec<&'a KStr>)> {
    let mut out: BTreeMap<Uuid, (u32, Vec<&KStr>)> = BTreeMap::new();
    for (m, subs) in members {
        for name in subs {
            if let Some(t) = topics.get(name) {
                let e = out.entry(t.id).or_insert_with(|| (t.partitions, Vec::new()));
                if e.1.last() != Some(&m) {
                    e.1.push(m);
                }
            }
        }
    }
    out
}

fn empty_targets(members: &BTreeMap<KStr, Vec<KStr>>) -> BTreeMap<KStr, Assignment> {
    members.keys().map(|m| (m.clone(), Assignment::new())).collect()
}

/// The `range` assignor.
#[must_use]
pub fn range(members: &BTreeMap<KStr, Vec<KStr>>, topics: &BTreeMap<KStr, TopicInfo>) -> BTreeMap<KStr, Assignment> {
    let mut out = empty_targets(members);
    for (topic, (partitions, subs)) in subscribers(members, topics) {
        let n = u32::try_from(subs.len()).unwrap_or(u32::MAX);
        if n == 0 {
            continue;
        }
        let (base, extra) = (partitions / n, partitions % n);
        let mut next = 0u32;
        for (i, m) in (0u32..).zip(subs) {
            let take = base + u32::from(i < extra);
            if take > 0
                && let Some(a) = out.get_mut(m)
            {
                let ps = a.entry(topic).or_default();
                for p in next..next + take {
                    ps.insert(i32::try_from(p).unwrap_or(i32::MAX));
                }
            }
            next += take;
        }
    }
    out
}

/// The `uniform` assignor.
#[must_use]
pub fn uniform(
    members: &BTreeMap<KStr, Vec<KStr>>,
    topics: &BTreeMap<KStr, TopicInfo>,
    previous: &BTreeMap<KStr, Assignment>,
) -> BTreeMap<KStr, Assignment> {
    let subs = subscribers(members, topics);
    let mut out = empty_targets(members);
    let mut load: BTreeMap<&KStr, usize> = members.keys().map(|m| (m, 0)).collect();
    let subscribed = |m: &KStr, t: &Uuid| subs.get(t).is_some_and(|(_, ms)| ms.binary_search(&m).is_ok());
    let total: usize = subs.values().map(|(p, _)| *p as usize).sum();
    // Stickiness: a member keeps its previous partitions up to its fair share.
    let share = if members.is_empty() { 0 } else { total.div_ceil(members.len()) };
    let mut owner: BTreeMap<(Uuid, i32), &KStr> = BTreeMap::new();
    for (m, a) in previous {
        let Some((m, _)) = members.get_key_value(m) else { continue };
        for (t, ps) in a {
            let Some((count, _)) = subs.get(t) else { continue };
            if !subscribed(m, t) {
                continue;
            }
            for &p in ps {
                let fits = u32::try_from(p).is_ok_and(|p| p < *count);
                let l = load.get_mut(m).map_or(usize::MAX, |l| *l);
                if fits && l < share && !owner.contains_key(&(*t, p)) {
                    owner.insert((*t, p), m);
                    *load.entry(m).or_default() += 1;
                }
            }
        }
    }
    // Every other partition goes to its least loaded subscriber.
    for (t, (count, ms)) in &subs {
        for p in 0..i32::try_from(*count).unwrap_or(i32::MAX) {
            if owner.contains_key(&(*t, p)) {
                continue;
            }
            if let Some(m) = ms.iter().min_by_key(|m| (load.get(*m).copied().unwrap_or(0), **m)) {
                owner.insert((*t, p), m);
                *load.entry(m).or_default() += 1;
            }
        }
    }
    // Balance: move partitions from a member to a subscriber with at least two fewer.
    let mut by_member: BTreeMap<&KStr, BTreeSet<(Uuid, i32)>> = BTreeMap::new();
    for (tp, m) in &owner {
        by_member.entry(m).or_default().insert(*tp);
    }
    let bound = total.saturating_mul(members.len()).max(1);
    for _ in 0..bound {
        let mut moved = false;
        let mut order: Vec<(&KStr, usize)> = load.iter().map(|(m, l)| (*m, *l)).collect();
        order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        'from: for &(from, from_load) in &order {
            let Some(parts) = by_member.get(from) else { continue };
            for &(t, p) in parts.iter().rev() {
                let Some((_, ms)) = subs.get(&t) else { continue };
                let best = ms.iter().filter(|m| **m != from).min_by_key(|m| (load.get(*m).copied().unwrap_or(0), **m));
                if let Some(to) = best
                    && load.get(to).copied().unwrap_or(0) + 1 < from_load
                {
                    let to: &KStr = to;
                    by_member.entry(from).or_default().remove(&(t, p));
                    by_member.entry(to).or_default().insert((t, p));
                    *load.entry(from).or_default() -= 1;
                    *load.entry(to).or_default() += 1;
                    moved = true;
                    break 'from;
                }
            }
        }
        if !moved {
            break;
        }
    }
    for (m, parts) in by_member {
        if let Some(a) = out.get_mut(m) {
            for (t, p) in parts {
                a.entry(t).or_default().insert(p);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(spec: &[(&str, u32)]) -> BTreeMap<KStr, TopicInfo> {
        spec.iter()
            .enumerate()
            .map(|(i, (n, p))| (KStr::from(*n), TopicInfo { id: Uuid::from_u64_pair(1, i as u64 + 1), partitions: *p }))
            .collect()
    }

    fn members(spec: &[(&str, &[&str])]) -> BTreeMap<KStr, Vec<KStr>> {
        spec.iter().map(|(m, ts)| (KStr::from(*m), ts.iter().map(|t| KStr::from(*t)).collect())).collect()
    }

    #[test]
    fn range_gives_consecutive_ranges_extra_to_the_first() {
        let t = topics(&[("a", 7)]);
        let out = range(&members(&[("m1", &["a"]), ("m2", &["a"]), ("m3", &["a"])]), &t);
        let id = t["a"].id;
        let got: Vec<Vec<i32>> = out.values().map(|a| a[&id].iter().copied().collect()).collect();
        assert_eq!(got, vec![vec![0, 1, 2], vec![3, 4], vec![5, 6]]);
    }

    #[test]
    fn uniform_is_balanced_and_sticky() {
        let t = topics(&[("a", 6)]);
        let two = members(&[("m1", &["a"]), ("m2", &["a"])]);
        let first = uniform(&two, &t, &BTreeMap::new());
        assert!(first.values().all(|a| a.values().map(BTreeSet::len).sum::<usize>() == 3));
        let three = members(&[("m1", &["a"]), ("m2", &["a"]), ("m3", &["a"])]);
        let second = uniform(&three, &t, &first);
        for m in ["m1", "m2"] {
            let (old, new) = (&first[m], &second[m]);
            assert_eq!(new.values().map(BTreeSet::len).sum::<usize>(), 2);
            assert!(new.iter().all(|(t, ps)| ps.is_subset(&old[t])), "{m} kept its partitions");
        }
    }
}
