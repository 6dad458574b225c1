use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use super::*;
use crate::test_support::{is_root, process_gone, script_dir, write_script};

fn words(command: &str) -> Vec<String> {
    split_command(command)
        .expect("parses")
        .into_iter()
        .map(|w| w.to_string_lossy().into_owned())
        .collect()
}

fn root() -> Option<ScriptUser> {
    Some(ScriptUser {
        user: "root".to_string(),
        group: None,
    })
}

/// As keepalived with enable_script_security and `script_user root`.
fn secure_runner() -> ScriptRunner {
    ScriptRunner::new(true, root())
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn splits_like_keepalived() {
    assert_eq!(
        words("/bin/check.sh arg1  arg2"),
        ["/bin/check.sh", "arg1", "arg2"]
    );
    assert_eq!(words("  /x\t'a b' \"c d\""), ["/x", "a b", "c d"]);
    // Quotes may start and end mid-word, as in a shell.
    assert_eq!(words("/x pre'mid dle'post"), ["/x", "premid dlepost"]);
    // The other quote character is literal inside quotes.
    assert_eq!(
        words(r#"/x "it's" 'say "hi"'"#),
        ["/x", "it's", r#"say "hi""#]
    );
    // Escapes work everywhere, with C meanings.
    assert_eq!(
        words(r"/x a\ b \x41\101 'q\'q' \n"),
        ["/x", "a b", "AA", "q'q", "\n"]
    );
    assert_eq!(words(r#"/x """#), ["/x", ""]);
    assert!(split_command("/x 'open").is_err());
    assert!(split_command("/x trailing\\").is_err());
    assert!(split_command("   ").is_err());
}

#[test]
fn shell_form_quotes_arguments() {
    let argv = vec![
        OsString::from("</dev/tcp/1.2.3.4/80"),
        OsString::from("it's"),
    ];
    assert_eq!(
        shell_command(&argv),
        OsString::from(r"</dev/tcp/1.2.3.4/80 'it'\''s'")
    );
}

#[tokio::test]
async fn reports_exit_codes() {
    let dir = script_dir();
    let runner = ScriptRunner::new(false, None);
    for code in [0, 1, 7] {
        let script = write_script(
            dir.path(),
            &format!("exit{code}.sh"),
            &format!("exit {code}"),
        );
        let outcome = runner
            .run(&script.to_string_lossy(), None, SECOND * 5, &[])
            .await;
        assert_eq!(outcome, ScriptOutcome::Exited(code));
    }
    assert!(runner.run("true", None, SECOND * 5, &[]).await.success());
}

#[tokio::test]
async fn passes_arguments_and_extra_arguments() {
    let dir = script_dir();
    let out = dir.path().join("args.out");
    let script = write_script(
        dir.path(),
        "args.sh",
        &format!("printf '%s|' \"$@\" > {}", out.display()),
    );
    let runner = ScriptRunner::new(false, None);
    let command = format!("{} 'one two' three", script.display());
    let extra = ["GROUP".to_string(), "VI 1".to_string()];
    let outcome = runner.run(&command, None, SECOND * 5, &extra).await;
    assert_eq!(outcome, ScriptOutcome::Exited(0));
    assert_eq!(
        fs::read_to_string(&out).expect("output"),
        "one two|three|GROUP|VI 1|"
    );
}

#[tokio::test]
async fn shell_file_test_runs_through_sh() {
    let runner = ScriptRunner::new(false, None);
    assert_eq!(
        runner.run("</dev/null", None, SECOND * 5, &[]).await,
        ScriptOutcome::Exited(0)
    );
    assert!(
        !runner
            .run("</nonexistent/file", None, SECOND * 5, &[])
            .await
            .success()
    );
}

#[tokio::test]
async fn a_hung_script_and_its_children_are_killed_on_timeout() {
    let dir = script_dir();
    let pids = dir.path().join("pids");
    let script = write_script(
        dir.path(),
        "hang.sh",
        &format!(
            "sleep 100 &\necho $$ $! > {}.tmp\nmv {0}.tmp {0}\nwait",
            pids.display()
        ),
    );
    let runner = ScriptRunner::new(false, None).with_kill_grace(Duration::from_millis(500));
    let started = Instant::now();
    let outcome = runner
        .run(
            &script.to_string_lossy(),
            None,
            Duration::from_millis(300),
            &[],
        )
        .await;
    assert_eq!(outcome, ScriptOutcome::Timeout);
    // SIGTERM ends `sh` and `sleep` at once: no need for the grace period.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let text = fs::read_to_string(&pids).expect("script wrote its pids");
    let pids: Vec<i32> = text
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect();
    assert_eq!(pids.len(), 2);
    for pid in pids {
        assert!(
            crate::test_support::wait_until(|| process_gone(pid)).await,
            "process {pid} still running"
        );
    }
}

#[tokio::test]
async fn a_script_ignoring_sigterm_gets_sigkill() {
    let dir = script_dir();
    let pidfile = dir.path().join("pid");
    let script = write_script(
        dir.path(),
        "stubborn.sh",
        &format!(
            "trap '' TERM\necho $$ > {}.tmp\nmv {0}.tmp {0}\nwhile :; do sleep 1; done",
            pidfile.display()
        ),
    );
    let runner = ScriptRunner::new(false, None).with_kill_grace(Duration::from_millis(200));
    let started = Instant::now();
    let outcome = runner
        .run(
            &script.to_string_lossy(),
            None,
            Duration::from_millis(200),
            &[],
        )
        .await;
    assert_eq!(outcome, ScriptOutcome::Timeout);
    assert!(started.elapsed() < Duration::from_secs(3));
    let pid: i32 = fs::read_to_string(&pidfile)
        .expect("pid")
        .trim()
        .parse()
        .expect("pid");
    assert!(crate::test_support::wait_until(|| process_gone(pid)).await);
}

#[tokio::test]
async fn bare_command_is_found_in_path_and_timed_out() {
    let runner = ScriptRunner::new(false, None).with_kill_grace(Duration::from_millis(200));
    let started = Instant::now();
    let outcome = runner
        .run("sleep 100", None, Duration::from_millis(100), &[])
        .await;
    assert_eq!(outcome, ScriptOutcome::Timeout);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn missing_and_non_executable_scripts_are_not_run() {
    let dir = script_dir();
    let runner = ScriptRunner::new(false, None);
    let missing = dir.path().join("missing.sh");
    assert!(matches!(
        runner
            .run(&missing.to_string_lossy(), None, SECOND, &[])
            .await,
        ScriptOutcome::NotRun(ScriptError::Inaccessible { .. })
    ));
    assert!(matches!(
        runner.run("no-such-command-xlb", None, SECOND, &[]).await,
        ScriptOutcome::NotRun(ScriptError::NotInPath { .. })
    ));
    let plain = dir.path().join("plain.sh");
    fs::write(&plain, "#!/bin/sh\nexit 0\n").expect("write");
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o644)).expect("chmod");
    assert!(matches!(
        runner
            .run(&plain.to_string_lossy(), None, SECOND, &[])
            .await,
        ScriptOutcome::NotRun(ScriptError::NotExecutable { .. })
    ));
}

#[tokio::test]
async fn security_refuses_a_world_writable_script() {
    if !is_root() {
        eprintln!("skipped: needs root to own the test scripts");
        return;
    }
    let dir = script_dir();
    let script = write_script(dir.path(), "open.sh", "exit 0");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o777)).expect("chmod");
    let outcome = secure_runner()
        .run(&script.to_string_lossy(), None, SECOND * 5, &[])
        .await;
    match outcome {
        ScriptOutcome::NotRun(ScriptError::Insecure {
            component, reason, ..
        }) => {
            assert_eq!(component, script);
            assert_eq!(reason, "is writable by others");
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    // Without enable_script_security keepalived only warns, and runs it.
    let lax = ScriptRunner::new(false, root());
    assert_eq!(
        lax.run(&script.to_string_lossy(), None, SECOND * 5, &[])
            .await,
        ScriptOutcome::Exited(0)
    );
}

#[tokio::test]
async fn security_refuses_a_script_in_a_world_writable_directory() {
    if !is_root() {
        eprintln!("skipped: needs root to own the test scripts");
        return;
    }
    let dir = script_dir();
    let open_dir = dir.path().join("open");
    fs::create_dir(&open_dir).expect("mkdir");
    fs::set_permissions(&open_dir, fs::Permissions::from_mode(0o777)).expect("chmod");
    let script = write_script(&open_dir, "check.sh", "exit 0");
    let error = match secure_runner()
        .run(&script.to_string_lossy(), None, SECOND * 5, &[])
        .await
    {
        ScriptOutcome::NotRun(e) => e,
        other => panic!("expected refusal, got {other:?}"),
    };
    let ScriptError::Insecure { component, .. } = &error else {
        panic!("expected Insecure, got {error:?}");
    };
    assert_eq!(component, &open_dir);
    // The log line names the script and the offending directory.
    let line = error.to_string();
    assert!(
        line.contains("Unsafe permissions found for script"),
        "{line}"
    );
    assert!(line.contains(&open_dir.display().to_string()), "{line}");

    // The sticky bit (as on /tmp) makes a shared directory safe.
    fs::set_permissions(&open_dir, fs::Permissions::from_mode(0o1777)).expect("chmod");
    assert_eq!(
        secure_runner()
            .run(&script.to_string_lossy(), None, SECOND * 5, &[])
            .await,
        ScriptOutcome::Exited(0)
    );
}

#[tokio::test]
async fn security_refuses_a_script_owned_by_another_user() {
    if !is_root() {
        eprintln!("skipped: needs root to chown");
        return;
    }
    let dir = script_dir();
    let script = write_script(dir.path(), "theirs.sh", "exit 0");
    std::os::unix::fs::chown(&script, Some(65534), None).expect("chown");
    match secure_runner()
        .run(&script.to_string_lossy(), None, SECOND * 5, &[])
        .await
    {
        ScriptOutcome::NotRun(ScriptError::Insecure { reason, .. }) => {
            assert_eq!(reason, "is owned by uid 65534, not root")
        }
        other => panic!("expected refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn runs_as_the_given_user_and_group() {
    if !is_root() {
        eprintln!("skipped: needs root to change user");
        return;
    }
    let dir = script_dir();
    let out_dir = dir.path().join("out");
    fs::create_dir(&out_dir).expect("mkdir");
    fs::set_permissions(&out_dir, fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = out_dir.join("id");
    let script = write_script(
        dir.path(),
        "whoami.sh",
        &format!("echo $(id -u):$(id -g):$(id -G) > {}", out.display()),
    );
    let nobody = ScriptUser {
        user: "nobody".to_string(),
        group: None,
    };
    let nobody_account = resolve_account(&nobody).expect("nobody exists");
    // Security applies to root scripts only: a world-writable directory
    // for the output does not matter to a script run as nobody.
    let outcome = secure_runner()
        .run(&script.to_string_lossy(), Some(&nobody), SECOND * 5, &[])
        .await;
    assert_eq!(outcome, ScriptOutcome::Exited(0));
    let written = fs::read_to_string(&out).expect("script output");
    let expected = format!(
        "{}:{}:{}",
        nobody_account.uid, nobody_account.gid, nobody_account.gid
    );
    assert_eq!(written.trim(), expected);

    // The global script_user applies when the script names none.
    fs::remove_file(&out).expect("rm");
    let by_default = ScriptRunner::new(false, Some(nobody.clone()));
    assert_eq!(
        by_default
            .run(&script.to_string_lossy(), None, SECOND * 5, &[])
            .await,
        ScriptOutcome::Exited(0)
    );
    assert!(
        fs::read_to_string(&out)
            .expect("output")
            .starts_with(&format!("{}:", nobody_account.uid))
    );
}

#[tokio::test]
async fn unknown_user_is_not_run() {
    let runner = ScriptRunner::new(false, None);
    let ghost = ScriptUser {
        user: "no-such-user-xlb".to_string(),
        group: None,
    };
    assert_eq!(
        runner.run("true", Some(&ghost), SECOND, &[]).await,
        ScriptOutcome::NotRun(ScriptError::UnknownUser {
            user: "no-such-user-xlb".to_string()
        })
    );
    let bad_group = ScriptUser {
        user: "root".to_string(),
        group: Some("no-such-group-xlb".to_string()),
    };
    assert!(matches!(
        runner.run("true", Some(&bad_group), SECOND, &[]).await,
        ScriptOutcome::NotRun(ScriptError::UnknownGroup { .. })
    ));
}

#[tokio::test]
async fn security_without_any_script_user_refuses_like_keepalived() {
    let default = ScriptUser {
        user: DEFAULT_SCRIPT_ACCOUNT.to_string(),
        group: None,
    };
    if resolve_account(&default).is_ok() {
        eprintln!("skipped: this machine has a {DEFAULT_SCRIPT_ACCOUNT} account");
        return;
    }
    let runner = ScriptRunner::new(true, None);
    assert!(matches!(
        runner.run("true", None, SECOND, &[]).await,
        ScriptOutcome::NotRun(ScriptError::NoDefaultUser { .. })
    ));
}
