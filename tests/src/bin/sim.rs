//! `sim`: long seed sweeps of the deterministic simulator.
//!
//! ```text
//! SIM_SEEDS=0..100000 cargo run --release -p kelp-tests --bin sim
//! SIM_SEED=1234 SIM_VERBOSE=1 cargo run -p kelp-tests --bin sim     # replay one seed
//! ```
//! `SIM_THREADS` (default 1) runs seeds on that many threads. `SIM_TWICE=1` runs each seed
//! twice and compares the traces; `SIM_FAIL_FAST=1` stops at the first failure. Prints every failure as `SIM_SEED=<n>`, then seeds/s and
//! simulated seconds per wall second; exits non-zero if any seed failed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use kelp_tests::sim::{run_seed, run_twice, seeds_from_env};

fn main() {
    let seeds = seeds_from_env(0..1000);
    let threads: u64 = std::env::var("SIM_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
    let verbose = std::env::var("SIM_VERBOSE").is_ok_and(|v| v == "1");
    let twice = std::env::var("SIM_TWICE").is_ok_and(|v| v == "1");
    let fail_fast = std::env::var("SIM_FAIL_FAST").is_ok_and(|v| v == "1");
    // Panics are reported as failures with their seed; the default hook would print them too.
    if !verbose {
        std::panic::set_hook(Box::new(|_| {}));
    }
    let next = AtomicU64::new(seeds.start);
    let sim_ns = AtomicU64::new(0);
    let events = AtomicU64::new(0);
    let handovers = AtomicU64::new(0);
    let trimmed = AtomicU64::new(0);
    let zombies = AtomicU64::new(0);
    let compacted = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let failed: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= seeds.end {
                        return;
                    }
                    let r = if twice { run_twice(seed) } else { run_seed(seed, verbose) };
                    match r {
                        Ok(o) => {
                            sim_ns.fetch_add(o.sim_time.0, Ordering::Relaxed);
                            events.fetch_add(o.events, Ordering::Relaxed);
                            handovers.fetch_add(o.handovers, Ordering::Relaxed);
                            trimmed.fetch_add(o.trimmed, Ordering::Relaxed);
                            zombies.fetch_add(o.zombies, Ordering::Relaxed);
                            compacted.fetch_add(o.compacted, Ordering::Relaxed);
                            if verbose {
                                println!("seed {seed}: ok {o:?}");
                            }
                        }
                        Err(f) => {
                            println!("{f}");
                            failed.lock().expect("lock").push(seed);
                            if fail_fast {
                                next.store(seeds.end, Ordering::Relaxed);
                            }
                        }
                    }
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_multiple_of(5000) {
                        let secs = start.elapsed().as_secs_f64();
                        eprintln!("{n} seeds, {:.1} seeds/s", n as f64 / secs);
                    }
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let sim_secs = sim_ns.load(Ordering::Relaxed) as f64 / 1e9;
    let failed = failed.into_inner().expect("lock");
    println!(
        "{n} seeds ({}..{}) in {secs:.1} s: {:.1} seeds/s, {:.0} simulated s per wall s, {} events, {} KIP-848 ownerships ({} from zombies), {} fetches below a trimmed log start, {} records compacted away under fetches, {} failed {:?}",
        seeds.start,
        seeds.end,
        n as f64 / secs,
        sim_secs / secs,
        events.load(Ordering::Relaxed),
        handovers.load(Ordering::Relaxed),
        zombies.load(Ordering::Relaxed),
        trimmed.load(Ordering::Relaxed),
        compacted.load(Ordering::Relaxed),
        failed.len(),
        &failed[..failed.len().min(20)]
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
