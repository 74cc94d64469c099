//! The mover's exit codes, shared by every mover command.

/// How a mover command ended. Callers compare a process's exit status with these; a code not
/// listed here (a signal, a crash) is a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ExitCode {
    /// Done: the target matches the source.
    Ok = 0,
    /// Fatal: nothing, or not everything, could be attempted.
    Fatal = 1,
    /// Usage error: the command line or its paths are not acceptable.
    Usage = 2,
    /// Partial: some entries failed; the summary lists each with its error (rsync's code).
    Partial = 23,
    /// Refused: the source is empty or missing, so a mirror would wipe the target.
    Refused = 254,
}

impl ExitCode {
    /// Every exit code, in numeric order.
    pub const ALL: [ExitCode; 5] = [
        ExitCode::Ok,
        ExitCode::Fatal,
        ExitCode::Usage,
        ExitCode::Partial,
        ExitCode::Refused,
    ];

    /// The number the process exits with.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The exit code a process status stands for; `None` for a number the mover never exits
    /// with on its own.
    pub fn from_code(code: i32) -> Option<ExitCode> {
        Self::ALL.into_iter().find(|c| i32::from(c.code()) == code)
    }

    /// Whether the target holds what was copied: done, or partial with the failures listed.
    pub fn wrote_target(self) -> bool {
        matches!(self, ExitCode::Ok | ExitCode::Partial)
    }

    /// The code of a run made of several copies, this one and then `later`: done is better than
    /// partial, and partial better than any failure; of two failures, the later one.
    pub fn worst(self, later: ExitCode) -> ExitCode {
        if later != ExitCode::Ok && (self == ExitCode::Ok || later != ExitCode::Partial) {
            later
        } else {
            self
        }
    }
}

impl From<ExitCode> for u8 {
    fn from(c: ExitCode) -> u8 {
        c.code()
    }
}

impl From<ExitCode> for i32 {
    fn from(c: ExitCode) -> i32 {
        i32::from(c.code())
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(c: ExitCode) -> std::process::ExitCode {
        std::process::ExitCode::from(c.code())
    }
}

impl TryFrom<i32> for ExitCode {
    type Error = i32;

    fn try_from(code: i32) -> Result<ExitCode, i32> {
        ExitCode::from_code(code).ok_or(code)
    }
}

impl TryFrom<u8> for ExitCode {
    type Error = u8;

    fn try_from(code: u8) -> Result<ExitCode, u8> {
        ExitCode::from_code(i32::from(code)).ok_or(code)
    }
}

impl PartialEq<ExitCode> for i32 {
    fn eq(&self, other: &ExitCode) -> bool {
        *self == i32::from(*other)
    }
}

impl PartialEq<ExitCode> for u8 {
    fn eq(&self, other: &ExitCode) -> bool {
        *self == other.code()
    }
}

impl PartialEq<i32> for ExitCode {
    fn eq(&self, other: &i32) -> bool {
        i32::from(self.code()) == *other
    }
}

impl PartialEq<u8> for ExitCode {
    fn eq(&self, other: &u8) -> bool {
        self.code() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_numbers() {
        // docs/DESIGN's table; 23 is rsync's code for a partial transfer, 254 the original
        // BackupEr's code for an empty source.
        let numbers: Vec<u8> = ExitCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(numbers, [0, 1, 2, 23, 254]);
    }

    #[test]
    fn numbers_convert_both_ways() {
        for c in ExitCode::ALL {
            assert_eq!(ExitCode::try_from(i32::from(c)), Ok(c));
            assert_eq!(ExitCode::try_from(u8::from(c)), Ok(c));
            assert!(i32::from(c) == c && c.code() == c);
            assert!(c == i32::from(c) && c == c.code());
        }
        assert_eq!(ExitCode::from_code(3), None);
        assert_eq!(ExitCode::try_from(143i32), Err(143));
        assert_eq!(ExitCode::from_code(-1), None);
    }

    #[test]
    fn the_worst_code_ranks_done_then_partial_then_failures() {
        use ExitCode as C;
        assert_eq!(C::Ok.worst(C::Ok), C::Ok);
        assert_eq!(C::Ok.worst(C::Partial), C::Partial);
        assert_eq!(C::Partial.worst(C::Ok), C::Partial);
        assert_eq!(C::Partial.worst(C::Partial), C::Partial);
        for failure in [C::Fatal, C::Usage, C::Refused] {
            assert_eq!(C::Ok.worst(failure), failure);
            assert_eq!(C::Partial.worst(failure), failure);
            assert_eq!(failure.worst(C::Ok), failure);
            assert_eq!(failure.worst(C::Partial), failure);
        }
        assert_eq!(C::Fatal.worst(C::Refused), C::Refused);
    }
}
