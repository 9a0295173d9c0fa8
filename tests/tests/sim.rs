//! The deterministic simulation sweep: 500 fixed seeds, each run twice (the two traces must be
//! identical), every invariant checked at every step, then a liveness phase with faults off.
//! `SIM_SEED=<n>` replays one seed, `SIM_SEEDS=a..b` sweeps another range. A failure names its
//! seed: `SIM_SEED=<n> cargo test -p kelp-tests --test sim` replays it, and
//! `SIM_SEED=<n> SIM_VERBOSE=1 cargo run -p kelp-tests --bin sim` prints its last events.

use kelp_tests::sim::{run_twice, seeds_from_env};

#[test]
fn every_seed_keeps_the_invariants_and_converges_deterministically() {
    let seeds = seeds_from_env(0..500);
    let mut failed = Vec::new();
    let (mut acked, mut checked, mut handovers, mut compacted) = (0u64, 0u64, 0u64, 0u64);
    let (mut stable, mut deleted) = (0u64, 0u64);
    let (mut regex_members, mut churn_seeds) = (0u64, 0u64);
    let (mut txn_committed, mut txn_aborted) = (0u64, 0u64);
    for seed in seeds.clone() {
        match run_twice(seed) {
            Ok(o) => {
                acked += o.acked;
                checked += o.checked;
                handovers += o.handovers;
                compacted += o.compacted;
                stable += o.stable_848;
                deleted += o.topics_deleted;
                regex_members += o.regex_members;
                churn_seeds += u64::from(o.regex_churn);
                txn_committed += o.txn_committed;
                txn_aborted += o.txn_aborted;
            }
            Err(f) => {
                eprintln!("{f}");
                failed.push(seed);
            }
        }
    }
    eprintln!(
        "{} seeds: {acked} records acknowledged, {checked} checked, {handovers} KIP-848 ownerships, {regex_members} regex members, {churn_seeds} seeds with regex topic churn, {stable} KIP-848 groups checked stable, {deleted} topics deleted, {compacted} compacted away, transactions: {txn_committed} committed, {txn_aborted} aborted",
        seeds.end - seeds.start
    );
    assert!(failed.is_empty(), "failing seeds (replay with SIM_SEED=<n>): {failed:?}");
    // The sweep must have done real work, not passed by doing nothing.
    assert!(acked > 0 && checked > 0, "the sweep acknowledged {acked} and checked {checked} records");
    if seeds.end - seeds.start >= 100 {
        // A wide sweep must have run KIP-848 groups whose members took partitions.
        assert!(handovers > 0, "no KIP-848 member took a partition in {seeds:?}");
        // And KIP-848 groups checked at a stable point (regex subscriptions and topic churn
        // included), and topics deleted under them.
        assert!(
            stable > 0 && deleted > 0,
            "{regex_members} regex members, {churn_seeds} seeds with regex topic churn, {stable} KIP-848 groups checked stable, {deleted} topics deleted"
        );
        // And seeds with compacted topics whose fetches spanned records the cleaner removed.
        assert!(compacted > 0, "no fetch in {seeds:?} skipped a record the cleaner removed");
        // And transactional producers that committed and aborted, read with read_committed.
        assert!(txn_committed > 0 && txn_aborted > 0, "{txn_committed} transactions committed, {txn_aborted} aborted");
    }
}
