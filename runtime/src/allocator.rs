//! The allocator's settings at start.
//!
//! jemalloc hands freed pages back to the kernel on a decay timer (10 s),
//! but by default only while the process allocates: a proxy that went
//! quiet after a connect storm kept its peak RSS (BENCHMARKS.md, "Held
//! connections: memory per connection"). Its background threads purge on
//! time instead, whatever the process is doing.

/// Turns on jemalloc's background purging; a failure is logged, not fatal
/// (memory then comes back only while the process allocates).
pub fn give_memory_back() {
    #[cfg(all(feature = "jemalloc", not(fuzzing)))]
    if let Err(err) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!("cannot start jemalloc's background purging: {err}");
    }
}
