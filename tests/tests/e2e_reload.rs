//! Live reload under traffic: a client opens connection after connection through the VIP while
//! the config changes weights, gains a backend, loses one, and is replaced by an invalid file.
//! No connection may fail because of a reload.

use std::{
    collections::BTreeMap,
    thread,
    time::{Duration, Instant},
};

use xlb_tests::lab::{Answer, DrLab, xlb_binary};

fn per_backend<'a>(answers: impl Iterator<Item = &'a Answer>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for a in answers {
        if let Ok(id) = &a.result {
            *counts.entry(id.clone()).or_default() += 1;
        }
    }
    counts
}

#[test]
fn no_connection_fails_while_the_config_is_reloaded() {
    let mut lab = DrLab::new("reload", 4).expect("building the lab");
    let xlb = xlb_binary();
    let config = lab.write_config("xlb.conf", &[1, 1, 1]).unwrap();
    lab.start_director(&xlb, &config).unwrap();
    let text = |members: &[(usize, u32)]| {
        std::fs::read_to_string(lab.write_config_members("next.conf", members).unwrap()).unwrap()
    };
    let settle = Duration::from_millis(1500);

    let load = lab.start_load().unwrap();
    thread::sleep(settle);
    // A weight change: one table rebuilt and flipped.
    lab.reload_with(&xlb, &config, &text(&[(0, 3), (1, 1), (2, 1)]))
        .unwrap();
    thread::sleep(settle);
    // A fourth backend. xlb resolves its MAC first; until then it gets nothing.
    lab.reload_with(&xlb, &config, &text(&[(0, 3), (1, 1), (2, 1), (3, 2)]))
        .unwrap();
    let added = Instant::now();
    thread::sleep(2 * settle);
    // b2 leaves the config: new connections avoid it, the ones it has finish.
    lab.reload_with(&xlb, &config, &text(&[(0, 3), (2, 1), (3, 2)]))
        .unwrap();
    let removed = Instant::now();
    thread::sleep(settle);
    // An invalid file: refused, the running config stays.
    lab.reload_with(
        &xlb,
        &config,
        "virtual_server 10.99.0.100 80 {\n    delay_loop x\n    weight x\n",
    )
    .unwrap();
    thread::sleep(settle);
    let answers = load.finish();
    let log = lab.log();
    assert!(log.contains("reload refused"), "{log}");

    let failures: Vec<&Answer> = answers.iter().filter(|a| a.result.is_err()).collect();
    eprintln!(
        "{} connections during the reloads, per backend: {:?}",
        answers.len(),
        per_backend(answers.iter())
    );
    assert!(answers.len() > 200, "too little traffic: {}", answers.len());
    assert!(
        failures.is_empty(),
        "{} of {} connections failed: {:?}\nxlb log:\n{log}",
        failures.len(),
        answers.len(),
        &failures[..failures.len().min(10)]
    );
    let after_add = per_backend(answers.iter().filter(|a| a.started > added));
    assert!(
        after_add.get("b4").is_some_and(|n| *n > 0),
        "the added backend gets connections: {after_add:?}"
    );
    // Connections opened once the removal was applied never reach b2.
    let after_remove = per_backend(
        answers
            .iter()
            .filter(|a| a.started > removed + Duration::from_millis(100)),
    );
    assert!(
        !after_remove.contains_key("b2"),
        "the removed backend still gets new connections: {after_remove:?}\nxlb log:\n{log}"
    );
    assert!(after_remove.len() == 3, "{after_remove:?}");
}
