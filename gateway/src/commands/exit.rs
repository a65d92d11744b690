//! How a command ends: the process's exit code, one table for every command.

use std::process::ExitCode;

/// A command's outcome as its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// 0: done; valid; the tests pass; allowed; nothing flips.
    Success = 0,
    /// 1: failed, with a message naming the config field or file; a policy test failed.
    Failure = 1,
    /// 2: bad usage (the command line does not parse).
    Usage = 2,
    /// 3: `policy check` denied; `policy replay` found a decision that flips.
    Denied = 3,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}
