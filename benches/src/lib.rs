//! Inputs shared by kelp's criterion benches (built once per process, deterministic).
