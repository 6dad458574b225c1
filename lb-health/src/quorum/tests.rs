use std::net::Ipv4Addr;

use lb_config::{SorryServer, VirtualServer};

use super::*;
use crate::test_support::{LOCALHOST, real_server, virtual_server};

const SORRY: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99));

/// A virtual server with real servers on ports 8001.. of the given weights.
fn vs_with(weights: &[u32]) -> VirtualServer {
    virtual_server(
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| real_server(8001 + i as u16, w, Vec::new()))
            .collect(),
    )
}

fn with_sorry(mut vs: VirtualServer) -> VirtualServer {
    vs.sorry_server = Some(SorryServer {
        address: SORRY,
        port: 80,
    });
    vs
}

/// Health of each real server of `vs`: `up[i]`, configured weight.
fn states(vs: &VirtualServer, up: &[bool]) -> HashMap<RsKey, RealServerHealth> {
    vs.real_servers
        .iter()
        .zip(up)
        .map(|(rs, &up)| {
            (
                (rs.address, rs.port),
                RealServerHealth {
                    up,
                    weight: rs.weight,
                    inhibit_on_failure: rs.inhibit_on_failure,
                    failed_checkers: usize::from(!up),
                },
            )
        })
        .collect()
}

fn ports(e: &EffectiveVs) -> Vec<(u16, u32)> {
    e.backends.iter().map(|b| (b.port, b.weight)).collect()
}

#[test]
fn live_servers_forward_with_their_weight() {
    let vs = vs_with(&[1, 2, 3]);
    let mut q = QuorumState::default();
    let e = effective_backends(&vs, &states(&vs, &[true, true, true]), &mut q);
    assert_eq!(ports(&e), [(8001, 1), (8002, 2), (8003, 3)]);
    assert!(e.quorum_up && !e.sorry);
    assert_eq!(e.transition, None);
    assert_eq!(e.weight_sum, 6);
}

#[test]
fn dead_servers_are_removed_or_inhibited() {
    let mut vs = vs_with(&[1, 2, 3]);
    vs.real_servers[2].inhibit_on_failure = true;
    let mut q = QuorumState::default();
    let e = effective_backends(&vs, &states(&vs, &[true, false, false]), &mut q);
    // 8002 is gone; 8003 stays with weight 0.
    assert_eq!(ports(&e), [(8001, 1), (8003, 0)]);
}

#[test]
fn a_server_without_state_counts_as_down() {
    let vs = vs_with(&[1, 1]);
    let mut only_first = states(&vs, &[true, true]);
    only_first.remove(&(LOCALHOST, 8002));
    let e = effective_backends(&vs, &only_first, &mut QuorumState::default());
    assert_eq!(ports(&e), [(8001, 1)]);
}

#[test]
fn dynamic_weight_from_state_is_used_and_summed() {
    let vs = vs_with(&[1, 1]);
    let mut s = states(&vs, &[true, true]);
    if let Some(h) = s.get_mut(&(LOCALHOST, 8001)) {
        h.weight = 5;
    }
    let e = effective_backends(&vs, &s, &mut QuorumState::default());
    assert_eq!(ports(&e), [(8001, 5), (8002, 1)]);
    assert_eq!(e.weight_sum, 6);
}

#[test]
fn hysteresis_delays_both_transitions() {
    // quorum 3, hysteresis 1: lost below 2, regained at 4.
    let mut vs = with_sorry(vs_with(&[1, 1, 1, 1]));
    vs.quorum = 3;
    vs.hysteresis = 1;
    let mut q = QuorumState::default();
    let step = |up: &[bool], q: &mut QuorumState| effective_backends(&vs, &states(&vs, up), q);

    let e = step(&[true, true, true, true], &mut q);
    assert!(e.quorum_up && e.transition.is_none());
    let e = step(&[true, true, true, false], &mut q);
    assert!(e.quorum_up && e.transition.is_none());
    // Sum 2 is below the quorum but not below quorum - hysteresis.
    let e = step(&[true, true, false, false], &mut q);
    assert!(e.quorum_up && e.transition.is_none());
    assert_eq!(ports(&e), [(8001, 1), (8002, 1)]);

    let e = step(&[true, false, false, false], &mut q);
    assert_eq!(e.transition, Some(QuorumTransition::Lost));
    assert!(!e.quorum_up && e.sorry);
    assert_eq!(
        e.backends,
        [Backend {
            address: SORRY,
            port: 80,
            weight: SORRY_SERVER_WEIGHT
        }]
    );
    assert_eq!(
        e.transition_line("[10.0.0.100]:tcp:80").as_deref(),
        Some("Lost quorum 3-1=2 > 1 for VS [10.0.0.100]:tcp:80")
    );

    // Back to 3: reaching the quorum is not enough, quorum + hysteresis is.
    let e = step(&[true, true, true, false], &mut q);
    assert!(!e.quorum_up && e.sorry && e.transition.is_none());
    let e = step(&[true, true, true, true], &mut q);
    assert_eq!(e.transition, Some(QuorumTransition::Gained));
    assert!(e.quorum_up && !e.sorry);
    assert_eq!(ports(&e), [(8001, 1), (8002, 1), (8003, 1), (8004, 1)]);
    assert_eq!(
        e.transition_line("[10.0.0.100]:tcp:80").as_deref(),
        Some("Gained quorum 3+1=4 <= 4 for VS [10.0.0.100]:tcp:80")
    );
}

#[test]
fn without_sorry_server_a_lost_quorum_keeps_the_live_servers() {
    let mut vs = vs_with(&[1, 1, 1]);
    vs.quorum = 2;
    let mut q = QuorumState::default();
    effective_backends(&vs, &states(&vs, &[true, true, true]), &mut q);
    let e = effective_backends(&vs, &states(&vs, &[true, false, false]), &mut q);
    assert_eq!(e.transition, Some(QuorumTransition::Lost));
    assert!(!e.sorry);
    assert_eq!(ports(&e), [(8001, 1)]);
}

#[test]
fn losing_every_server_loses_the_quorum() {
    let vs = vs_with(&[1, 1]);
    let mut q = QuorumState::default();
    effective_backends(&vs, &states(&vs, &[true, true]), &mut q);
    let e = effective_backends(&vs, &states(&vs, &[false, false]), &mut q);
    assert_eq!(e.transition, Some(QuorumTransition::Lost));
    assert!(e.backends.is_empty());
}

#[test]
fn starting_down_with_a_sorry_server_uses_it_at_once() {
    // alpha: everything starts down.
    let vs = with_sorry(vs_with(&[1, 1]));
    let mut q = QuorumState::default();
    let e = effective_backends(&vs, &states(&vs, &[false, false]), &mut q);
    assert_eq!(e.transition, Some(QuorumTransition::StartedDown));
    assert!(e.sorry);
    assert_eq!(ports(&e), [(80, SORRY_SERVER_WEIGHT)]);
    // No repeated transition while nothing changes.
    let e = effective_backends(&vs, &states(&vs, &[false, false]), &mut q);
    assert_eq!(e.transition, None);
    let e = effective_backends(&vs, &states(&vs, &[true, false]), &mut q);
    assert_eq!(e.transition, Some(QuorumTransition::Gained));
    assert_eq!(ports(&e), [(8001, 1)]);
}

#[test]
fn starting_down_without_sorry_server_is_silent() {
    let vs = vs_with(&[1, 1]);
    let e = effective_backends(
        &vs,
        &states(&vs, &[false, false]),
        &mut QuorumState::default(),
    );
    assert_eq!(e.transition, None);
    assert!(!e.quorum_up);
}

#[test]
fn inhibited_servers_stay_at_weight_zero_behind_the_sorry_server() {
    let mut vs = with_sorry(vs_with(&[1, 1, 1]));
    vs.quorum = 2;
    vs.real_servers[0].inhibit_on_failure = true;
    let mut q = QuorumState::default();
    effective_backends(&vs, &states(&vs, &[true, true, true]), &mut q);
    let e = effective_backends(&vs, &states(&vs, &[true, false, false]), &mut q);
    assert!(e.sorry);
    assert_eq!(ports(&e), [(8001, 0), (80, SORRY_SERVER_WEIGHT)]);
}

#[test]
fn quorum_and_hysteresis_are_clamped_like_keepalived() {
    // quorum 10 > total weight 3 becomes 3; hysteresis 5 >= 3 becomes 2.
    let mut vs = vs_with(&[1, 1, 1]);
    vs.quorum = 10;
    vs.hysteresis = 5;
    let e = effective_backends(
        &vs,
        &states(&vs, &[true, true, true]),
        &mut QuorumState::default(),
    );
    assert_eq!((e.quorum, e.hysteresis), (3, 2));
    // As in keepalived, quorum + hysteresis may still exceed the total: the
    // quorum then starts (and stays) down.
    assert!(!e.quorum_up);
    assert_eq!(e.threshold, 5);
}
