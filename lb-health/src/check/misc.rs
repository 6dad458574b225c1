//! MISC_CHECK: run a script; its exit status says whether the real server
//! is up (keepalived's check_misc.c, `misc_check_child_thread`).
//!
//! - exit 0: up, with the configured weight;
//! - with `misc_dynamic`, exit 2..=255: up, with weight status - 2
//!   (keepalived: "the actual weight set when using misc_dynamic is two
//!   less than the exit status returned");
//! - any other exit status, death by a signal, or overrunning misc_timeout
//!   (the script is killed): down.
//!
//! A script that cannot be run (refused as insecure, not found, unknown
//! user) counts as down. keepalived instead drops such a checker at
//! start-up, which leaves the real server up if it was the only check;
//! failing closed is the safer reading for a load balancer.

use lb_config::MiscCheck;

use super::{CheckFailure, CheckSuccess, MiscFailure};
use crate::script::{ScriptOutcome, ScriptRunner, split_command};

/// One MISC_CHECK attempt.
pub async fn check_misc(
    check: &MiscCheck,
    runner: &ScriptRunner,
) -> Result<CheckSuccess, CheckFailure> {
    let outcome = runner
        .run(
            &check.misc_path,
            check.user.as_ref(),
            check.misc_timeout.as_duration(),
            &[],
        )
        .await;
    let failure = match outcome {
        ScriptOutcome::Exited(0) => return Ok(CheckSuccess::PLAIN),
        ScriptOutcome::Exited(code @ 2..=255) if check.misc_dynamic => {
            return Ok(CheckSuccess {
                dynamic_weight: u32::try_from(code - 2).ok(),
            });
        }
        ScriptOutcome::Exited(code) => MiscFailure::Status(code),
        ScriptOutcome::Signaled(sig) => MiscFailure::Signal(sig),
        ScriptOutcome::Timeout => MiscFailure::TimedOut,
        ScriptOutcome::NotRun(e) => MiscFailure::NotRun(e.to_string()),
    };
    Err(CheckFailure::Misc {
        script: script_name(&check.misc_path),
        failure,
    })
}

/// The script's first word, which keepalived names in its log lines.
pub fn script_name(command: &str) -> String {
    split_command(command)
        .ok()
        .and_then(|argv| argv.into_iter().next())
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| command.to_string())
}
