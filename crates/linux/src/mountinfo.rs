//! Reading /proc/PID/mountinfo. Runs in: the client (which grants hold mounts, and which
//! can be idmapped) and the helper (what the set-id guard marks).
//!
//! As bytes: a mount point anywhere on the host need not be UTF-8.

use std::path::PathBuf;

/// The mount point of each line of a mount table.
pub fn mount_points(table: &[u8]) -> impl Iterator<Item = PathBuf> + '_ {
    table
        .split(|&c| c == b'\n')
        .filter_map(|line| line.split(|&c| c == b' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
}

/// Mount points in /proc/self/mountinfo escape space, tab, newline and backslash as `\ooo`.
pub fn unescape(b: &[u8]) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let v = u32::from(d[0] - b'0') * 64 + u32::from(d[1] - b'0') * 8 + u32::from(d[2] - b'0');
                out.push(v as u8);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(b"/mnt/a\\040b\\011c"), "/mnt/a b\tc");
        assert_eq!(unescape(b"/plain"), "/plain");
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(unescape(b"/mnt/\xff").as_bytes(), b"/mnt/\xff");
        assert_eq!(unescape(br"/a\040b\011c\134d").as_bytes(), b"/a b\tc\\d");
        assert_eq!(unescape(br"/x\04").as_bytes(), br"/x\04");
    }

    #[test]
    fn mount_points_of_a_table() {
        let table = b"22 1 0:21 / / rw - ext4 /dev/vda rw\n30 22 0:30 / /g/a\\040b rw - tmpfs t rw\n";
        assert_eq!(mount_points(table).collect::<Vec<_>>(), vec![PathBuf::from("/"), PathBuf::from("/g/a b")]);
    }
}
