//! Process limits: every connection is a file descriptor, so the daemon
//! raises its `RLIMIT_NOFILE` soft limit to the hard limit at start (as
//! systemd's own services do with `LimitNOFILE`), and logs what it got; and
//! freed memory is handed back to the system now and then.

/// Raises the soft limit on open files to the hard limit; returns `(soft, hard)`.
pub fn raise_nofile() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        lim = raised;
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Returns freed heap memory to the system (glibc keeps it in its arenas
/// otherwise: after a burst of streamed answers RSS would stay at its peak).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let (soft, hard) = super::raise_nofile().unwrap();
        assert_eq!(soft, hard);
    }
}
