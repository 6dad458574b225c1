//! No input makes the parser panic or hang: random bytes, random damage to
//! the fixtures, and the regression corpus in tests/corpus/. When damaged
//! input still loads, its printed form must read back identical.

mod common;

use std::path::PathBuf;

use common::*;
use proptest::prelude::*;

fn read_lossy(path: &std::path::Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).expect("readable fixture")).into_owned()
}

/// Whatever happens, no panic; and a config that loads round-trips.
fn check(text: &str) {
    if let Ok(loaded) = lb_config::parse_str(text, "fuzz.conf") {
        let printed = loaded.config.to_keepalived_string();
        match lb_config::parse_str(&printed, "printed.conf") {
            Ok(again) => assert_eq!(
                loaded.config, again.config,
                "input:\n{text}\nprinted:\n{printed}"
            ),
            Err(e) => {
                panic!("printed config does not parse:\n{e}\ninput:\n{text}\nprinted:\n{printed}")
            }
        }
    }
}

#[test]
fn regression_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/corpus") {
        let path = entry.expect("entry").path();
        check(&read_lossy(&path));
        // Through load too, so includes resolve from the corpus directory.
        let _ = lb_config::load(&path);
        count += 1;
    }
    assert!(count >= 10);
}

fn seed_texts() -> Vec<String> {
    let mut paths = files("seeds", ".conf");
    paths.extend(files("valid", ".conf"));
    paths.iter().map(|p| read_lossy(p)).collect()
}

/// Pieces of keepalived syntax, so random text reaches deep into the grammar.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("\n".to_string()),
        Just("\"".to_string()),
        Just("!".to_string()),
        Just("//".to_string()),
        prop::sample::select(vec![
            "global_defs",
            "vrrp_script",
            "vrrp_instance",
            "vrrp_sync_group",
            "virtual_server",
            "real_server",
            "TCP_CHECK",
            "HTTP_GET",
            "SSL_GET",
            "MISC_CHECK",
            "url",
            "group",
            "virtual_ipaddress",
            "track_script",
            "authentication",
            "unicast_peer",
            "state",
            "MASTER",
            "interface",
            "virtual_router_id",
            "priority",
            "advert_int",
            "version",
            "lb_kind",
            "DR",
            "NAT",
            "lb_algo",
            "mh",
            "sh",
            "weight",
            "persistence_timeout",
            "delay_loop",
            "connect_timeout",
            "status_code",
            "path",
            "script",
            "include",
            "10.0.0.1",
            "10.0.0.1/24",
            "fe80::1/64",
            "80",
            "0",
            "255",
            "-5",
            "0.05",
            "dev",
            "label",
            "eth0",
            "notify_master",
            "fwmark",
            "nb_get_retry",
            "misc_path",
        ])
        .prop_map(str::to_string),
        "[a-z0-9_./:-]{1,8}",
    ]
}

/// One kind of damage a blog, an editor or a tired operator does to a config.
#[derive(Debug, Clone)]
enum Damage {
    DeleteToken(usize),
    DuplicateToken(usize),
    Truncate(usize),
    SwapLines(usize, usize),
    Insert(usize, String),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::DeleteToken),
        any::<usize>().prop_map(Damage::DuplicateToken),
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Damage::SwapLines(a, b)),
        (any::<usize>(), token()).prop_map(|(a, t)| Damage::Insert(a, t)),
    ]
}

/// Splits into whitespace-separated tokens, keeping the separators.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if c.is_whitespace() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            out.push(c.to_string());
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn apply(text: &str, d: &Damage) -> String {
    let mut toks = tokens(text);
    if toks.is_empty() {
        return text.to_string();
    }
    match d {
        Damage::DeleteToken(i) => {
            toks.remove(i % toks.len());
        }
        Damage::DuplicateToken(i) => {
            let t = toks[i % toks.len()].clone();
            toks.insert(i % toks.len(), t);
        }
        Damage::Truncate(i) => {
            let chars: Vec<char> = text.chars().collect();
            return chars[..i % (chars.len() + 1)].iter().collect();
        }
        Damage::SwapLines(a, b) => {
            let mut lines: Vec<&str> = text.split('\n').collect();
            let n = lines.len();
            lines.swap(a % n, b % n);
            return lines.join("\n");
        }
        Damage::Insert(i, t) => {
            toks.insert(i % (toks.len() + 1), format!(" {t} "));
        }
    }
    toks.concat()
}

/// 300 per property in the normal run; set PROPTEST_CASES for a longer hunt.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_keepalived_tokens(toks in prop::collection::vec(token(), 0..200), seps in prop::collection::vec(prop::sample::select(vec![" ", "\n", "\t", ""]), 200)) {
        let text: String = toks.iter().zip(seps.iter()).map(|(t, s)| format!("{t}{s}")).collect();
        check(&text);
    }

    #[test]
    fn damaged_fixtures(which in any::<usize>(), damages in prop::collection::vec(damage(), 1..6)) {
        let texts = seed_texts();
        let mut text = texts[which % texts.len()].clone();
        for d in &damages {
            text = apply(&text, d);
        }
        check(&text);
    }
}
