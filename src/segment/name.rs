//! Validated POSIX shared-memory object names.
//!
//! POSIX (`shm_open(3)`) leaves names with a `/` after the first position
//! implementation-defined; Linux maps `/name` to `/dev/shm/name`. shmpi
//! accepts a name with or without ONE leading `/` and always stores it with
//! the `/`. After it, 1 to [`MAX_NAME_LEN`] bytes from `[A-Za-z0-9._-]`, not
//! starting with `.` (no `.`, `..` or hidden files in `/dev/shm`).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use super::NameError;

/// Longest name accepted, in bytes, without the leading `/` (Linux's
/// `NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;

/// Prefix of every name made by [`SegmentName::unique`]; `shmpi ls` and the
/// test suite's leak check look for it.
pub const UNIQUE_PREFIX: &str = "shmpi";

/// A validated shared-memory object name, stored as `/name`.
///
/// # Examples
///
/// ```
/// use shmpi::segment::SegmentName;
///
/// let a = SegmentName::new("job-42.data").unwrap();
/// let b = SegmentName::new("/job-42.data").unwrap();
/// assert_eq!(a, b);
/// assert_eq!(a.as_str(), "/job-42.data");
/// assert_eq!(a.file_name(), "job-42.data");
/// assert!(SegmentName::new("a/b").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SegmentName(String);

impl SegmentName {
    /// Validates `name` (see the module docs) and normalises it to `/name`.
    ///
    /// # Errors
    ///
    /// [`NameError`] saying what is wrong: empty, too long, a byte outside
    /// the allowed set (including `/` after the first position and NUL), or a
    /// leading `.`.
    pub fn new(name: &str) -> Result<Self, NameError> {
        let bare = name.strip_prefix('/').unwrap_or(name);
        validate_bare(bare)?;
        Ok(SegmentName(format!("/{bare}")))
    }

    /// A name unique to this job, process and call:
    /// `shmpi.<tag>.<job>.<pid>.<counter>`, where `<job>` is taken from
    /// `SHMPI_JOB_ID`, then the batch system's or MPI launcher's job id
    /// (`SLURM_JOB_ID`, `PBS_JOBID`, `OMPI_MCA_orte_ess_jobid`), else `local`.
    /// Characters of the tag or job id outside the allowed set become `_`,
    /// and each is cut to 64 characters so the name stays within the limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmpi::segment::SegmentName;
    ///
    /// let a = SegmentName::unique("demo");
    /// let b = SegmentName::unique("demo");
    /// assert_ne!(a, b);
    /// assert!(a.file_name().starts_with("shmpi.demo."));
    /// ```
    pub fn unique(tag: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let job = [
            "SHMPI_JOB_ID",
            "SLURM_JOB_ID",
            "PBS_JOBID",
            "OMPI_MCA_orte_ess_jobid",
        ]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "local".to_owned());
        // Sanitised parts are in the allowed set and short enough: at most
        // 5 + 64 + 64 + 10 + 20 + 4 dots < MAX_NAME_LEN.
        SegmentName(format!(
            "/{UNIQUE_PREFIX}.{}.{}.{}.{n}",
            sanitise(tag),
            sanitise(&job),
            std::process::id()
        ))
    }

    /// The name with its leading `/`, as `shm_open` takes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name without the `/`: the file name under `/dev/shm`.
    pub fn file_name(&self) -> &str {
        &self.0[1..]
    }
}

fn sanitise(s: &str) -> String {
    let mapped: String = s
        .chars()
        .take(64)
        .map(|c| if is_allowed(c as u32) { c } else { '_' })
        .collect();
    if mapped.is_empty() {
        "_".to_owned()
    } else {
        mapped
    }
}

fn is_allowed(c: u32) -> bool {
    matches!(
        char::from_u32(c),
        Some('0'..='9' | 'A'..='Z' | 'a'..='z' | '.' | '_' | '-')
    )
}

fn validate_bare(bare: &str) -> Result<(), NameError> {
    if bare.is_empty() {
        return Err(NameError::Empty);
    }
    if bare.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            len: bare.len(),
            max: MAX_NAME_LEN,
        });
    }
    if let Some((position, &byte)) = bare
        .as_bytes()
        .iter()
        .enumerate()
        .find(|(_, &b)| !is_allowed(u32::from(b)))
    {
        return Err(NameError::InvalidByte { byte, position });
    }
    if bare.starts_with('.') {
        return Err(NameError::LeadingDot);
    }
    Ok(())
}

impl fmt::Debug for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SegmentName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        SegmentName::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises() {
        assert_eq!(SegmentName::new("x").unwrap().as_str(), "/x");
        assert_eq!(SegmentName::new("/x").unwrap().as_str(), "/x");
        let longest = "a".repeat(MAX_NAME_LEN);
        assert!(SegmentName::new(&longest).is_ok());
    }

    #[test]
    fn rejects_each_kind_of_bad_name() {
        assert_eq!(SegmentName::new(""), Err(NameError::Empty));
        assert_eq!(SegmentName::new("/"), Err(NameError::Empty));
        assert_eq!(
            SegmentName::new(&"a".repeat(MAX_NAME_LEN + 1)),
            Err(NameError::TooLong {
                len: MAX_NAME_LEN + 1,
                max: MAX_NAME_LEN
            })
        );
        assert_eq!(
            SegmentName::new("a/b"),
            Err(NameError::InvalidByte {
                byte: b'/',
                position: 1
            })
        );
        assert_eq!(
            SegmentName::new("//a"),
            Err(NameError::InvalidByte {
                byte: b'/',
                position: 0
            })
        );
        assert_eq!(
            SegmentName::new("a\0b"),
            Err(NameError::InvalidByte {
                byte: 0,
                position: 1
            })
        );
        assert!(matches!(
            SegmentName::new("ä"),
            Err(NameError::InvalidByte { position: 0, .. })
        ));
        assert_eq!(SegmentName::new(".."), Err(NameError::LeadingDot));
    }

    #[test]
    fn unique_names_are_valid_and_distinct() {
        let a = SegmentName::unique("t a/g");
        let b = SegmentName::unique("t a/g");
        assert_ne!(a, b);
        assert!(SegmentName::new(a.as_str()).is_ok());
        assert!(a.file_name().starts_with("shmpi.t_a_g."));
        let long = SegmentName::unique(&"x".repeat(400));
        assert!(SegmentName::new(long.as_str()).is_ok());
    }
}
