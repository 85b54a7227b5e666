//! What start-up leaves resident and the gateway never uses again, handed back to the system.
//!
//! Opening DuckDB registers its thousands of built-in functions, and the first health round
//! and the first writes run the HTTP client's and DuckDB's set-up paths: the code pages that
//! touched (about 40 MB of the binary, 22 MB of it DuckDB's) stayed resident at idle, though
//! most of them never run again. Once the gateway has settled, the kernel is asked to drop the
//! executable's read-only pages that this process alone maps; what later runs is read back on
//! its first use (page faults on the first requests after that).

use std::path::Path;

/// Drops this process's resident pages of its own executable's read-only mappings.
#[allow(unsafe_code)]
pub fn release_start_up_code() {
    let (Ok(exe), Ok(maps)) = (std::fs::read_link("/proc/self/exe"), std::fs::read_to_string("/proc/self/maps")) else { return };
    for (start, end) in read_only_mappings(&maps, &exe) {
        // SAFETY: the range is one of this process's own read-only file mappings, as the kernel
        // listed it; MADV_PAGEOUT changes only whether its pages are resident, never what they
        // hold (a later read faults them back from the file). A kernel without it (before 5.4)
        // refuses, and nothing changes.
        let _ = unsafe { rustix::mm::madvise(start as *mut std::ffi::c_void, end - start, rustix::mm::Advice::LinuxPageOut) };
    }
}

/// The address ranges of `file`'s mappings without write permission, from `/proc/self/maps`
/// ("start-end perms offset dev inode path").
fn read_only_mappings(maps: &str, file: &Path) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (range, perms) = (fields.next()?, fields.next()?);
            if perms.contains('w') || fields.nth(3).map(Path::new) != Some(file) {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some((usize::from_str_radix(start, 16).ok()?, usize::from_str_radix(end, 16).ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_files_read_only_mappings_are_chosen() {
        let maps = "\
55d0c0000000-55d0c0100000 r--p 00000000 fd:01 123 /usr/bin/hermes
55d0c0100000-55d0c0900000 r-xp 00100000 fd:01 123 /usr/bin/hermes
55d0c0900000-55d0c0a00000 rw-p 00900000 fd:01 123 /usr/bin/hermes
7f0000000000-7f0000100000 r-xp 00000000 fd:01 456 /usr/lib/libc.so.6
7f0000200000-7f0000300000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
";
        assert_eq!(read_only_mappings(maps, Path::new("/usr/bin/hermes")), vec![(0x55d0c0000000, 0x55d0c0100000), (0x55d0c0100000, 0x55d0c0900000)]);
    }

    #[test]
    fn the_code_stays_mapped_and_runs_after_its_pages_are_dropped() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let mapped = || read_only_mappings(&std::fs::read_to_string("/proc/self/maps").unwrap(), &exe);
        let before = mapped();
        assert!(before.len() >= 2, "the test binary's text and read-only data: {before:?}");
        release_start_up_code();
        // Only residency changed: the same mappings, and the code in them runs on.
        assert_eq!(mapped(), before);
    }
}
