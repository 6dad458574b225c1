//! Running keepalived scripts: MISC_CHECK, notify_up/notify_down,
//! quorum_up/quorum_down and (later) vrrp_script and VRRP notify scripts.
//!
//! Follows keepalived's core/notify.c:
//! - the command line is split into argv with keepalived's quoting and
//!   escapes (`alloc_strvec_quoted_escaped` in lib/parser.c) and executed
//!   directly, not through a shell; only a command starting with `<` or `>`
//!   (keepalived's file-test idiom, e.g. `</dev/tcp/10.0.0.1/80`) goes to
//!   `/bin/sh -c`, as `system_call_script` does for it;
//! - the script runs as its `user USER [GROUP]`, else global `script_user`,
//!   else the `keepalived_script` account if it exists, else as us
//!   (`get_default_script_user`); a group written `:GROUP` (or a bare `:`)
//!   also sets the user's supplementary groups, as keepalived does;
//! - the child gets its own process group, so that a timeout can kill the
//!   script and everything it started (`setpgid(0, 0)` in
//!   `system_call_script`); on timeout the group gets SIGTERM, then SIGKILL
//!   (misc_check_child_thread: 2 seconds apart);
//! - `IFS`, `LD_PRELOAD` and `LD_LIBRARY_PATH` are removed from the
//!   environment;
//! - security (`check_script_secure`/`check_security`): a script that will
//!   run with root privileges must not be replaceable by anyone but root: no
//!   component of its path may be owned by a non-root user or be writable
//!   by a non-root group or by others (directories with the sticky bit,
//!   like /tmp, are fine). With `enable_script_security` such a script is
//!   refused; without it keepalived only warns, and so do we.

use std::collections::HashSet;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Component, Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lb_config::{GlobalDefs, ScriptUser};
use log::{debug, info, warn};

/// The account keepalived runs scripts as when neither the script nor
/// `global_defs` names one.
pub const DEFAULT_SCRIPT_ACCOUNT: &str = "keepalived_script";

/// How long a timed-out script has between SIGTERM and SIGKILL
/// (keepalived's misc_check_child_thread waits 2 seconds).
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);

/// How long to wait for a process to disappear after SIGKILL before giving
/// up on it (it is then reaped in the background by tokio).
const KILL_WAIT: Duration = Duration::from_secs(5);

const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_ISVTX: u32 = 0o1000;
const S_IXUSR: u32 = 0o100;
const S_IXGRP: u32 = 0o010;
const S_IXOTH: u32 = 0o001;
const S_IWGRP: u32 = 0o020;
const S_IWOTH: u32 = 0o002;

/// Why a script was not run. The messages follow keepalived's log lines.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error("Unable to parse script '{command}': {reason}")]
    Parse { command: String, reason: String },
    #[error("Cannot find script {script} in path - disabling")]
    NotInPath { script: String },
    #[error("Permissions failure for script {script} in path - disabling")]
    PathPermission { script: String },
    #[error("Script {script} cannot be accessed - {reason}")]
    Inaccessible { script: String, reason: String },
    #[error("WARNING - script '{script}' is not executable for uid:gid {uid}:{gid} - disabling.")]
    NotExecutable { script: String, uid: u32, gid: u32 },
    #[error("Wrong file type found in script path '{script}': '{component}' is {found}")]
    WrongFileType {
        script: String,
        component: PathBuf,
        found: &'static str,
    },
    #[error("Unsafe permissions found for script '{script}' - disabling: '{component}' {reason}")]
    Insecure {
        script: String,
        component: PathBuf,
        reason: String,
    },
    #[error("Script user '{user}' does not exist")]
    UnknownUser { user: String },
    #[error("Script group '{group}' does not exist")]
    UnknownGroup { group: String },
    #[error("Unable to resolve script {what} '{name}': {reason}")]
    Lookup {
        what: &'static str,
        name: String,
        reason: String,
    },
    #[error(
        "Unable to set default user {DEFAULT_SCRIPT_ACCOUNT} for script {script}: \
         enable_script_security needs `script_user` in global_defs, a `user` on the script \
         or a {DEFAULT_SCRIPT_ACCOUNT} account"
    )]
    NoDefaultUser { script: String },
    #[error("Error exec-ing command '{program}': {reason}")]
    Spawn { program: String, reason: String },
    #[error("Error waiting for script '{program}': {reason}")]
    Wait { program: String, reason: String },
}

/// How a script run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptOutcome {
    /// Exited by itself with this status.
    Exited(i32),
    /// Killed by this signal, not by us.
    Signaled(i32),
    /// Overran its timeout; its process group was killed.
    Timeout,
    /// Not started: bad command line, insecure, not found, unknown user...
    NotRun(ScriptError),
}

impl ScriptOutcome {
    /// Exit status 0.
    pub fn success(&self) -> bool {
        matches!(self, ScriptOutcome::Exited(0))
    }
}

/// The account a script runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups to set; empty clears them, as keepalived does
    /// when it changes user without `:GROUP`.
    pub supplementary: Vec<u32>,
}

impl Account {
    /// The account we run as: scripts run without changing ids.
    pub fn current() -> Self {
        // SAFETY: geteuid/getegid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        Account {
            uid,
            gid,
            supplementary: Vec::new(),
        }
    }

    fn is_current(&self) -> bool {
        let me = Account::current();
        self.uid == me.uid && self.gid == me.gid
    }
}

/// Runs scripts with keepalived's rules; one per configuration, shared by
/// every checker and notifier.
#[derive(Debug)]
pub struct ScriptRunner {
    security: bool,
    default_user: Option<ScriptUser>,
    kill_grace: Duration,
    /// Messages already logged at warning level: a refused or insecure
    /// script is run every delay_loop, its warning is worth saying once.
    reported: Mutex<HashSet<String>>,
    violation_reported: AtomicBool,
}

impl ScriptRunner {
    /// `enable_script_security` and the global `script_user`.
    pub fn new(enable_script_security: bool, default_user: Option<ScriptUser>) -> Self {
        ScriptRunner {
            security: enable_script_security,
            default_user,
            kill_grace: DEFAULT_KILL_GRACE,
            reported: Mutex::new(HashSet::new()),
            violation_reported: AtomicBool::new(false),
        }
    }

    pub fn from_global(global: &GlobalDefs) -> Self {
        Self::new(global.enable_script_security, global.script_user.clone())
    }

    /// Time between SIGTERM and SIGKILL for a script that overran.
    pub fn with_kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    pub fn security_enabled(&self) -> bool {
        self.security
    }

    pub fn default_user(&self) -> Option<&ScriptUser> {
        self.default_user.as_ref()
    }

    /// Runs `command` (keepalived syntax) with `extra_args` appended, as
    /// `user` or the default script user, and waits at most `timeout`.
    pub async fn run(
        &self,
        command: &str,
        user: Option<&ScriptUser>,
        timeout: Duration,
        extra_args: &[String],
    ) -> ScriptOutcome {
        // Preparing stats a few files and reads the account database:
        // local and short, not worth a blocking-pool hop.
        let prepared = match self.prepare(command, user, extra_args) {
            Ok(p) => p,
            Err(e) => {
                self.report_once(e.to_string());
                return ScriptOutcome::NotRun(e);
            }
        };
        self.execute(prepared, timeout).await
    }

    /// Everything but running: parse, find, resolve the account, check security.
    pub fn prepare(
        &self,
        command: &str,
        user: Option<&ScriptUser>,
        extra_args: &[String],
    ) -> Result<PreparedScript, ScriptError> {
        let mut argv = split_command(command).map_err(|reason| ScriptError::Parse {
            command: command.to_string(),
            reason,
        })?;
        let script = argv[0].to_string_lossy().into_owned();
        let account = self.account_for(user, &script)?;

        if is_shell_test(&argv[0]) {
            // keepalived passes `<file`/`>file` tests to system(): the shell
            // does the redirection; there is no script file to check.
            argv.extend(extra_args.iter().map(OsString::from));
            return Ok(PreparedScript {
                program: PathBuf::from("/bin/sh"),
                arg0: OsString::from("sh"),
                args: vec![OsString::from("-c"), shell_command(&argv)],
                account,
                display: script,
            });
        }

        let path = if argv[0].as_bytes().contains(&b'/') {
            std::path::absolute(&argv[0]).map_err(|e| ScriptError::Inaccessible {
                script: script.clone(),
                reason: e.to_string(),
            })?
        } else {
            let found = search_path(&argv[0], &account, &script)?;
            self.report_once(format!(
                "WARNING - script `{script}` resolved by path search to `{}`. Please specify full path.",
                found.display()
            ));
            found
        };
        let real = std::fs::canonicalize(&path).map_err(|e| ScriptError::Inaccessible {
            script: script.clone(),
            reason: e.to_string(),
        })?;
        let meta = std::fs::metadata(&real).map_err(|e| ScriptError::Inaccessible {
            script: script.clone(),
            reason: e.to_string(),
        })?;
        if !meta.is_file() || !is_executable(&meta, account.uid, account.gid) {
            return Err(ScriptError::NotExecutable {
                script,
                uid: account.uid,
                gid: account.gid,
            });
        }

        // keepalived checks only scripts that run with root privileges:
        // as uid or gid 0, or set-uid/set-gid root.
        let mode = meta.mode();
        let privileged = account.uid == 0
            || account.gid == 0
            || (meta.uid() == 0 && mode & S_IXUSR != 0 && mode & S_ISUID != 0)
            || (meta.gid() == 0 && mode & S_IXGRP != 0 && mode & S_ISGID != 0);
        if privileged {
            let mut insecure = false;
            let mut paths = vec![path.clone()];
            if real != path {
                paths.push(real.clone());
            }
            for p in &paths {
                if let Some((component, reason)) = unsafe_component(p, &script)? {
                    if self.security {
                        return Err(ScriptError::Insecure {
                            script,
                            component,
                            reason,
                        });
                    }
                    insecure = true;
                    self.report_once(format!(
                        "Unsafe permissions found for script '{script}': '{}' {reason}.",
                        component.display()
                    ));
                }
            }
            if !self.security && !self.violation_reported.swap(true, Ordering::Relaxed) {
                warn!(
                    "SECURITY VIOLATION - scripts are being executed but script_security not enabled.{}",
                    if insecure {
                        " There are insecure scripts."
                    } else {
                        ""
                    }
                );
            }
        }

        argv.remove(0);
        argv.extend(extra_args.iter().map(OsString::from));
        Ok(PreparedScript {
            // The resolved file is what was checked, so that is what runs
            // (keepalived execs script->path, the realpath, too).
            program: real,
            arg0: OsString::from(script.clone()),
            args: argv,
            account,
            display: script,
        })
    }

    /// Runs a prepared script; see [`ScriptRunner::run`].
    pub async fn execute(&self, script: PreparedScript, timeout: Duration) -> ScriptOutcome {
        let mut cmd = tokio::process::Command::new(&script.program);
        cmd.arg0(&script.arg0)
            .args(&script.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .env_remove("IFS")
            .env_remove("LD_PRELOAD")
            .env_remove("LD_LIBRARY_PATH");
        let switch_user = !script.account.is_current();
        let (uid, gid) = (script.account.uid, script.account.gid);
        let groups: Vec<libc::gid_t> = script.account.supplementary.clone();
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe system calls on memory prepared before the
        // fork; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                // Own process group: a timeout kills the script and its children.
                if libc::setpgid(0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if switch_user {
                    // Groups first: after setuid we may no longer change them.
                    if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    if libc::setgid(gid) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    if libc::setuid(uid) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }

        // ETXTBSY: the script was just written, and another thread's fork still holds it open
        // for writing until its exec (a race every multi-threaded program that writes and runs
        // files has); it clears within milliseconds.
        let mut spawned = cmd.spawn();
        for _ in 0..5 {
            match &spawned {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    spawned = cmd.spawn();
                }
                _ => break,
            }
        }
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let err = ScriptError::Spawn {
                    program: script.display.clone(),
                    reason: e.to_string(),
                };
                self.report_once(err.to_string());
                return ScriptOutcome::NotRun(err);
            }
        };
        let Some(pid) = child.id().and_then(|p| libc::pid_t::try_from(p).ok()) else {
            // Only after the child was reaped, which cannot have happened yet.
            return ScriptOutcome::NotRun(ScriptError::Wait {
                program: script.display,
                reason: "no process id".to_string(),
            });
        };
        debug!(
            "Running script {} with pid {pid} as uid:gid {uid}:{gid}, timeout {timeout:?}",
            script.display
        );
        let mut group = ProcessGroup {
            pgid: pid,
            live: true,
        };

        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => {
                group.live = false;
                outcome_of(status)
            }
            Ok(Err(e)) => ScriptOutcome::NotRun(ScriptError::Wait {
                program: script.display,
                reason: e.to_string(),
            }),
            Err(_) => {
                info!(
                    "Script {} (pid {pid}) timed out after {timeout:?}; terminating its process group",
                    script.display
                );
                group.signal(libc::SIGTERM);
                let exited = match tokio::time::timeout(self.kill_grace, child.wait()).await {
                    Ok(r) => r.is_ok(),
                    Err(_) => {
                        group.signal(libc::SIGKILL);
                        matches!(
                            tokio::time::timeout(KILL_WAIT, child.wait()).await,
                            Ok(Ok(_))
                        )
                    }
                };
                // The leader may have obeyed SIGTERM while children it
                // started did not: take down whatever is left of the group
                // (keepalived does the same after a SIGTERM exit).
                group.signal(libc::SIGKILL);
                group.live = false;
                if !exited {
                    warn!(
                        "Child (PID {pid}) of script {} failed to terminate after kill",
                        script.display
                    );
                }
                ScriptOutcome::Timeout
            }
        }
    }

    fn account_for(&self, user: Option<&ScriptUser>, script: &str) -> Result<Account, ScriptError> {
        if let Some(u) = user.or(self.default_user.as_ref()) {
            return resolve_account(u);
        }
        let default = ScriptUser {
            user: DEFAULT_SCRIPT_ACCOUNT.to_string(),
            group: None,
        };
        match resolve_account(&default) {
            Ok(a) => Ok(a),
            Err(_) if self.security => Err(ScriptError::NoDefaultUser {
                script: script.to_string(),
            }),
            Err(_) => Ok(Account::current()),
        }
    }

    /// Logs `message` at warning level the first time, at debug level after.
    fn report_once(&self, message: String) {
        let first = match self.reported.lock() {
            Ok(mut seen) => seen.insert(message.clone()),
            Err(_) => true,
        };
        if first {
            warn!("{message}");
        } else {
            debug!("{message}");
        }
    }
}

/// A script ready to run: what [`ScriptRunner::prepare`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedScript {
    pub program: PathBuf,
    pub arg0: OsString,
    pub args: Vec<OsString>,
    pub account: Account,
    /// The script as written, for log lines.
    pub display: String,
}

/// A process group we started; killed on drop unless known to be gone, so
/// that a cancelled run (e.g. a monitor stopped by a reload) leaves nothing
/// behind.
struct ProcessGroup {
    pgid: libc::pid_t,
    live: bool,
}

impl ProcessGroup {
    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill takes plain integers. A negative pid addresses the
        // group; our child leads it, and its pid is not reused while the
        // group has members or the leader is unreaped.
        let rc = unsafe { libc::kill(-self.pgid, sig) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ESRCH) {
                warn!("kill -{sig} of process group {} failed: {err}", self.pgid);
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if self.live {
            self.signal(libc::SIGKILL);
        }
    }
}

fn outcome_of(status: ExitStatus) -> ScriptOutcome {
    match (status.code(), status.signal()) {
        (Some(code), _) => ScriptOutcome::Exited(code),
        (None, Some(sig)) => ScriptOutcome::Signaled(sig),
        // Neither: stopped/continued, which wait() does not report.
        (None, None) => ScriptOutcome::Exited(-1),
    }
}

/// Splits a keepalived command line into words like keepalived's
/// `alloc_strvec_quoted_escaped`: whitespace separates words; `"` and `'`
/// quote (and may start or end mid-word, as in a shell); a backslash escapes
/// everywhere, including inside quotes, with C escapes (`\n`, `\t`, `\xHH`,
/// `\ooo`, `\cX`, `\E`...) and any other character standing for itself.
pub fn split_command(command: &str) -> Result<Vec<OsString>, String> {
    let s = command.as_bytes();
    let is_space = |c: u8| matches!(c, b' ' | b'\t' | b'\x0c' | b'\n' | b'\r' | b'\x0b');
    let mut words = Vec::new();
    let mut i = 0;
    loop {
        while i < s.len() && is_space(s[i]) {
            i += 1;
        }
        if i >= s.len() {
            break;
        }
        let mut word = Vec::new();
        let mut quote: Option<u8> = None;
        while i < s.len() {
            let c = s[i];
            if c == b'\\' {
                i += 1;
                let Some(&e) = s.get(i) else {
                    return Err("missing escape char at end".to_string());
                };
                let (byte, used) = unescape(&s[i..], e);
                word.push(byte);
                i += used;
                continue;
            }
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => word.push(c),
                None if c == b'"' || c == b'\'' => quote = Some(c),
                None if is_space(c) => break,
                None => word.push(c),
            }
            i += 1;
        }
        if let Some(q) = quote {
            return Err(format!("missing terminating {}", q as char));
        }
        words.push(OsString::from_vec(word));
    }
    if words.is_empty() {
        return Err("empty command".to_string());
    }
    Ok(words)
}

/// One escape: `rest` starts after the backslash, at `e`. Returns the byte
/// and how many bytes of `rest` it used.
fn unescape(rest: &[u8], e: u8) -> (u8, usize) {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    match e {
        b'x' if rest.get(1).and_then(|&c| hex(c)).is_some() => {
            let mut v = 0u8;
            let mut used = 1;
            while used <= 2 {
                match rest.get(used).and_then(|&c| hex(c)) {
                    Some(d) => {
                        v = (v << 4) | d;
                        used += 1;
                    }
                    None => break,
                }
            }
            (v, used)
        }
        b'c' if rest.len() > 1 => (rest[1] & 0x1f, 2),
        b'0'..=b'7' => {
            let mut v = e - b'0';
            let mut used = 1;
            while used < 3 {
                match rest.get(used) {
                    Some(&c @ b'0'..=b'7') => {
                        v = v.wrapping_shl(3).wrapping_add(c - b'0');
                        used += 1;
                    }
                    _ => break,
                }
            }
            (v, used)
        }
        b'a' => (0x07, 1),
        b'b' => (0x08, 1),
        b'E' => (0x1b, 1),
        b'f' => (0x0c, 1),
        b'n' => (b'\n', 1),
        b'r' => (b'\r', 1),
        b't' => (b'\t', 1),
        b'v' => (0x0b, 1),
        other => (other, 1),
    }
}

/// keepalived's `<file` / `>file` idiom, run through the shell.
fn is_shell_test(arg0: &OsStr) -> bool {
    matches!(arg0.as_bytes().first(), Some(b'<' | b'>'))
}

/// keepalived's `cmd_str`: a redirection first word as is, every other word
/// single-quoted for the shell.
fn shell_command(argv: &[OsString]) -> OsString {
    let mut out = Vec::new();
    for (i, arg) in argv.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        let bytes = arg.as_bytes();
        if i == 0 && is_shell_test(arg) {
            out.extend_from_slice(bytes);
            continue;
        }
        out.push(b'\'');
        for &b in bytes {
            if b == b'\'' {
                out.extend_from_slice(b"'\\''");
            } else {
                out.push(b);
            }
        }
        out.push(b'\'');
    }
    OsString::from_vec(out)
}

/// keepalived's `is_executable`: root needs any x bit; others the bit of
/// the class they fall in.
fn is_executable(meta: &std::fs::Metadata, uid: u32, gid: u32) -> bool {
    let mode = meta.mode();
    (uid == 0 && mode & (S_IXUSR | S_IXGRP | S_IXOTH) != 0)
        || (uid == meta.uid() && mode & S_IXUSR != 0)
        || (uid != meta.uid()
            && ((gid == meta.gid() && mode & S_IXGRP != 0)
                || (gid != meta.gid() && mode & S_IXOTH != 0)))
}

/// keepalived's `find_path`: a bare name is looked up in PATH, taking the
/// first regular file the account may execute.
fn search_path(name: &OsStr, account: &Account, script: &str) -> Result<PathBuf, ScriptError> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/bin:/usr/bin"));
    let mut denied = false;
    for dir in std::env::split_paths(&path) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(name);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            if meta.is_file() && is_executable(&meta, account.uid, account.gid) {
                return std::path::absolute(&candidate).map_err(|e| ScriptError::Inaccessible {
                    script: script.to_string(),
                    reason: e.to_string(),
                });
            }
            denied = true;
        }
    }
    if denied {
        Err(ScriptError::PathPermission {
            script: script.to_string(),
        })
    } else {
        Err(ScriptError::NotInPath {
            script: script.to_string(),
        })
    }
}

/// keepalived's `check_security`: walks `path` from `/` and returns the first
/// component a non-root user could use to replace the script, with why.
///
/// Like keepalived, each component is looked at itself (not followed): it
/// must be owned by root and, if a regular file or a directory without the
/// sticky bit, not writable by a non-root group or by others. Unlike
/// keepalived, a symbolic link to a directory in the middle of the path
/// (`/bin` on merged-/usr systems) is accepted when root owns it: the link
/// itself cannot be changed by others and the resolved path is checked too.
pub fn unsafe_component(
    path: &Path,
    script: &str,
) -> Result<Option<(PathBuf, String)>, ScriptError> {
    let components: Vec<Component<'_>> = path.components().collect();
    let mut prefix = PathBuf::new();
    for (idx, component) in components.iter().enumerate() {
        prefix.push(component);
        let last = idx + 1 == components.len();
        let meta = std::fs::symlink_metadata(&prefix).map_err(|e| ScriptError::Inaccessible {
            script: script.to_string(),
            reason: format!("{}: {e}", prefix.display()),
        })?;
        let ft = meta.file_type();
        if !last && !ft.is_dir() && !ft.is_symlink() {
            return Err(ScriptError::WrongFileType {
                script: script.to_string(),
                component: prefix,
                found: "not a directory",
            });
        }
        if last && !ft.is_file() && !ft.is_symlink() {
            return Err(ScriptError::WrongFileType {
                script: script.to_string(),
                component: prefix,
                found: "not a regular file",
            });
        }
        if meta.uid() != 0 {
            return Ok(Some((
                prefix,
                format!("is owned by uid {}, not root", meta.uid()),
            )));
        }
        let mode = meta.mode();
        let writable_kind = (ft.is_dir() && mode & S_ISVTX == 0) || ft.is_file();
        if writable_kind {
            if meta.gid() != 0 && mode & S_IWGRP != 0 {
                return Ok(Some((
                    prefix,
                    format!("is writable by group {}", meta.gid()),
                )));
            }
            if mode & S_IWOTH != 0 {
                return Ok(Some((prefix, "is writable by others".to_string())));
            }
        }
    }
    Ok(None)
}

/// Resolves `user [group]` with getpwnam_r/getgrnam_r, as keepalived's
/// `set_uid_gid` does.
pub fn resolve_account(user: &ScriptUser) -> Result<Account, ScriptError> {
    let name = CString::new(user.user.as_str()).map_err(|_| ScriptError::UnknownUser {
        user: user.user.clone(),
    })?;
    let (uid, user_gid) = lookup_user(&name, &user.user)?;
    let mut gid = user_gid;
    let mut want_supplementary = false;
    let mut group = user.group.as_deref();
    if let Some(g) = group
        && let Some(rest) = g.strip_prefix(':')
    {
        want_supplementary = true;
        group = (!rest.is_empty()).then_some(rest);
    }
    if let Some(g) = group {
        let cname = CString::new(g).map_err(|_| ScriptError::UnknownGroup {
            group: g.to_string(),
        })?;
        gid = lookup_group(&cname, g)?;
    }
    let supplementary = if want_supplementary {
        group_list(&name, user_gid)
    } else {
        Vec::new()
    };
    Ok(Account {
        uid,
        gid,
        supplementary,
    })
}

fn buffer_len() -> usize {
    // SAFETY: sysconf only reads configuration.
    let pw = unsafe { libc::sysconf(libc::_SC_GETPW_R_SIZE_MAX) };
    let gr = unsafe { libc::sysconf(libc::_SC_GETGR_R_SIZE_MAX) };
    usize::try_from(pw.max(gr)).unwrap_or(0).max(1024)
}

/// Runs a `get*nam_r`-style call, growing the buffer on ERANGE.
fn with_buffer<T>(
    what: &'static str,
    display: &str,
    mut call: impl FnMut(&mut Vec<libc::c_char>) -> (libc::c_int, Option<T>),
) -> Result<Option<T>, ScriptError> {
    let mut buf: Vec<libc::c_char> = vec![0; buffer_len()];
    loop {
        let (rc, found) = call(&mut buf);
        match rc {
            0 => return Ok(found),
            libc::ERANGE if buf.len() < (1 << 20) => {
                let len = buf.len() * 2;
                buf.resize(len, 0);
            }
            // Not-found is reported as 0 with a null result, but some libcs
            // use these errnos for it.
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            rc => {
                return Err(ScriptError::Lookup {
                    what,
                    name: display.to_string(),
                    reason: io::Error::from_raw_os_error(rc).to_string(),
                });
            }
        }
    }
}

fn lookup_user(name: &CStr, display: &str) -> Result<(u32, u32), ScriptError> {
    let found = with_buffer("username", display, |buf| {
        // SAFETY: passwd is plain data; getpwnam_r fills it with pointers into
        // buf, which outlives the call, and writes the result pointer.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        let found = (!result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid));
        (rc, found)
    })?;
    found.ok_or_else(|| ScriptError::UnknownUser {
        user: display.to_string(),
    })
}

fn lookup_group(name: &CStr, display: &str) -> Result<u32, ScriptError> {
    let found = with_buffer("group name", display, |buf| {
        // SAFETY: as in lookup_user, for getgrnam_r.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        let found = (!result.is_null()).then_some(grp.gr_gid);
        (rc, found)
    })?;
    found.ok_or_else(|| ScriptError::UnknownGroup {
        group: display.to_string(),
    })
}

/// The user's groups (getgrouplist), for `user NAME :GROUP`.
fn group_list(name: &CStr, gid: u32) -> Vec<u32> {
    let mut n: libc::c_int = 32;
    for _ in 0..8 {
        let mut groups: Vec<libc::gid_t> = vec![0; usize::try_from(n).unwrap_or(32)];
        let mut count = n;
        // SAFETY: groups has room for `count` entries; getgrouplist writes at
        // most that many and sets count to the number it has.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(usize::try_from(count).unwrap_or(0));
            return groups;
        }
        n = count.max(n.saturating_mul(2));
    }
    warn!(
        "get supplementary groups for {} failed",
        name.to_string_lossy()
    );
    Vec::new()
}

#[cfg(test)]
mod tests;
