//! The command line and start-up errors: clear messages, documented exit codes.

use std::process::{Command, Output};
use std::time::Duration;

use crate::support::node;

fn peercat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_peercat"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_busy_port_is_an_error_naming_the_address_with_exit_1() {
    let a = node("a").start();
    let busy = a.addr();
    let out = peercat(&["-l", &busy]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("error: cannot listen on {busy}: ")),
        "{stderr}"
    );
    // The OS's own words; Windows says it differently.
    #[cfg(unix)]
    assert!(stderr.contains("Address already in use"), "{stderr}");
}

#[test]
fn usage_errors_exit_2_and_say_what_was_wrong() {
    for (args, says) in [
        (&["host2"][..], "missing port"),
        (&["--max-frame", "0"][..], "--max-frame"),
        (&["--format", "xml"][..], "xml"),
        (&["--no-listen"][..], "nothing to do"),
        (&["--bogus"][..], "--bogus"),
    ] {
        let out = peercat(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn bad_mesh_flags_exit_2_and_say_what_was_wrong() {
    for (args, says) in [
        (
            &["--degree", "0"][..],
            "invalid value '0' for '--degree <D>'",
        ),
        (&["--degree", "65"][..], "65 is not in 1..=64"),
        (
            &["--degree", "8", "--max-peers", "5"][..],
            "--degree 8 needs --max-peers of at least 8 (it is 5)",
        ),
        (&["--ttl", "0"][..], "invalid value '0' for '--ttl <HOPS>'"),
        (
            &["--ttl", "300"][..],
            "invalid value '300' for '--ttl <HOPS>'",
        ),
        (
            &["--window", "1K", "--max-frame", "1K"][..],
            "--window 1024 is smaller than one message",
        ),
        (&["--window", "4Q"][..], "unknown unit 'Q'"),
        (&["--advertise", "10.0.0.5"][..], "missing port"),
        (&["--advertise", "10.0.0.5:0"][..], "'0' is not a port"),
        (
            &["--discover", "--discover-addr", "10.1.2.3:7117"][..],
            "10.1.2.3 is not a multicast group",
        ),
        (
            &["--discover", "--discover-addr", "239.1.2.3"][..],
            "expected GROUP:PORT",
        ),
        (&["--discover-addr", "239.1.2.3:7117"][..], "--discover"),
        (&["--wait-members", "many"][..], "--wait-members"),
    ] {
        let out = peercat(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// Without PEER or a listening socket, a peer cache is something to do: the
/// node starts (an absent cache file is a first run, not an error).
#[test]
fn no_listen_with_only_a_peer_cache_starts() {
    let cache = std::env::temp_dir().join(format!("peercat-absent-{}.txt", std::process::id()));
    let a = node("a")
        .args(&["--no-listen", "--peer-cache", cache.to_str().unwrap()])
        .start();
    assert!(
        a.log_text().contains("not listening (--no-listen)"),
        "{}",
        a.log_text()
    );
    assert_eq!(a.count_log("error"), 0, "{}", a.log_text());
}

#[test]
fn help_lists_every_flag_and_exits_0() {
    let out = peercat(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--no-listen",
        "--name",
        "--format",
        "--wait-peers",
        "--exit-on-eof",
        "--max-peers",
        "--max-frame",
        "--keepalive",
        "--stall-timeout",
        "--verbose",
        "--quiet",
        "--log-file",
        "--generate",
        "--degree",
        "--ttl",
        "--no-relay",
        "--peer-cache",
        "--discover",
        "--discover-addr",
        "--advertise",
        "--wait-members",
        "--window",
        "[PEER]...",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    // Says what README says: the group, not direct peers; sizes take G.
    assert!(
        help.contains("each line of stdin reaches every member") && !help.contains("every peer,"),
        "{help}"
    );
    let eof = help.split("--exit-on-eof").nth(1).unwrap();
    assert!(eof.contains("acknowledged"), "{eof}");
    assert!(!eof.contains("peer confirmed"), "{eof}");
    let max_frame = help.split("--max-frame").nth(1).unwrap();
    assert!(max_frame.contains("K, M and G"), "{max_frame}");
    let quiet = help.split("--quiet").nth(1).unwrap();
    let quiet = quiet.split("--log-file").next().unwrap();
    assert!(
        quiet.contains("`listening on` line is still printed"),
        "{quiet}"
    );
}

#[test]
fn generate_prints_completions_and_the_man_page_and_starts_nothing() {
    for (kind, says) in [
        ("complete-bash", "complete -F"),
        ("complete-zsh", "#compdef peercat"),
        ("complete-fish", "complete -c peercat"),
        ("complete-powershell", "Register-ArgumentCompleter"),
        ("man", ".TH peercat 1"),
    ] {
        // --no-listen without a PEER would be a usage error if it started.
        let out = peercat(&["--generate", kind, "--no-listen"]);
        assert_eq!(out.status.code(), Some(0), "{kind}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(says), "{kind} lacks {says:?}:\n{text}");
        // roff escapes its dashes.
        let plain = text.replace("\\-", "-");
        assert!(plain.contains("stall-timeout"), "{kind} lacks the flags");
        assert!(
            out.stderr.is_empty(),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn generate_something_unknown_is_a_usage_error() {
    let out = peercat(&["--generate", "complete-tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("complete-tcsh") && stderr.contains("complete-bash"),
        "{stderr}"
    );
}

#[test]
fn log_file_takes_the_log_and_stderr_stays_quiet() {
    let path = std::env::temp_dir().join(format!("peercat-log-{}.txt", std::process::id()));
    let b = node("b").start();
    let mut a = node("a")
        .args(&["--log-file", path.to_str().unwrap(), "--exit-on-eof"])
        .dial(&b)
        .start_quiet();
    b.wait_peer("a");
    a.close_stdin();
    assert!(a.expect_exit(Duration::from_secs(10)).success());
    let log = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(log.contains("listening on 127.0.0.1:"), "{log}");
    assert!(a.log_text().is_empty(), "stderr: {}", a.log_text());
}

#[test]
fn quiet_logs_only_where_it_listens_and_warnings() {
    let a = node("a").args(&["-q"]).start();
    let b = node("b").dial(&a).start();
    b.wait_peer("a");
    assert!(a.port > 0);
    // One announcement, no info chatter about b.
    assert_eq!(a.count_log("INFO"), 1, "{}", a.log_text());
    assert_eq!(a.count_log("peer up"), 0);
}
