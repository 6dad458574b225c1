//! Sync groups move together, with keepalived's rules.

use std::net::IpAddr;
use std::time::Duration;

use lb_vrrp::packet::MULTICAST_V4;
use lb_vrrp::{
    Action, GroupAction, Instance, InstanceConfig, RxMeta, State, SyncGroup, TransitionReason,
};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address literal")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Outside (VRID 10) and inside (VRID 20) instances of one router.
fn group(prio_outside: u8, prio_inside: u8) -> SyncGroup {
    let outside = InstanceConfig::new(
        10,
        prio_outside,
        ip("198.51.100.1"),
        vec![ip("198.51.100.100")],
    );
    let inside = InstanceConfig::new(20, prio_inside, ip("10.0.0.1"), vec![ip("10.0.0.100")]);
    SyncGroup::new(vec![
        Instance::new(outside).expect("valid"),
        Instance::new(inside).expect("valid"),
    ])
}

fn states(g: &SyncGroup) -> Vec<State> {
    g.members().iter().map(Instance::state).collect()
}

fn for_member(actions: &[GroupAction], member: usize) -> Vec<Action> {
    actions
        .iter()
        .filter(|a| a.member == member)
        .map(|a| a.action)
        .collect()
}

fn peer_meta(member: usize) -> RxMeta {
    let src = if member == 0 {
        ip("198.51.100.2")
    } else {
        ip("10.0.0.2")
    };
    RxMeta::new(src, IpAddr::V4(MULTICAST_V4))
}

/// Runs the group's timers until `end`.
fn run(g: &mut SyncGroup, end: Duration) -> Vec<(Duration, GroupAction)> {
    let mut log = Vec::new();
    while let Some(at) = g.next_deadline().filter(|&at| at <= end) {
        log.extend(g.on_timer(at).into_iter().map(|a| (at, a)));
    }
    log
}

#[test]
fn members_start_as_backup() {
    let mut g = group(100, 200);
    let actions = g.start(Duration::ZERO);
    assert_eq!(actions.len(), 2);
    assert_eq!(states(&g), vec![State::Backup, State::Backup]);
    assert_eq!(g.state(), State::Backup);
}

#[test]
fn the_group_becomes_master_when_the_last_member_wants_to() {
    let mut g = group(100, 200);
    g.start(Duration::ZERO);
    let inside_timeout = g.members()[1].master_down_interval(); // 3.21875 s
    let outside_timeout = g.members()[0].master_down_interval(); // 3.609375 s
    assert!(inside_timeout < outside_timeout);

    // The inside times out first but waits for the outside.
    let log = run(&mut g, inside_timeout);
    assert!(log.is_empty(), "held back, nothing sent: {log:?}");
    assert_eq!(states(&g), vec![State::Backup, State::Backup]);

    // The outside times out: both become master together.
    let log = run(&mut g, outside_timeout);
    let actions: Vec<GroupAction> = log.into_iter().map(|(_, a)| a).collect();
    assert_eq!(
        for_member(&actions, 0).last(),
        Some(&Action::StateChanged {
            from: State::Backup,
            to: State::Master,
            reason: TransitionReason::MasterDown
        })
    );
    assert_eq!(
        for_member(&actions, 1).last(),
        Some(&Action::StateChanged {
            from: State::Backup,
            to: State::Master,
            reason: TransitionReason::SyncGroup
        })
    );
    assert_eq!(
        for_member(&actions, 1)[0],
        Action::SendAdvert { priority: 200 }
    );
    assert_eq!(states(&g), vec![State::Master, State::Master]);
    assert_eq!(g.state(), State::Master);
}

#[test]
fn a_member_that_hears_a_master_stops_wanting_to_take_over() {
    let mut g = group(100, 200);
    g.start(Duration::ZERO);
    let inside_timeout = g.members()[1].master_down_interval();
    run(&mut g, inside_timeout);
    // The inside network has a live master after all.
    let advert = g.members()[1].advert(250);
    g.on_advert(inside_timeout + ms(10), 1, &peer_meta(1), &advert)
        .expect("accepted");
    // Now the outside timing out is not enough.
    run(&mut g, Duration::from_secs(4));
    assert_eq!(states(&g), vec![State::Backup, State::Backup]);
}

#[test]
fn one_member_stepping_down_takes_the_group_to_backup() {
    let mut g = group(100, 200);
    g.start(Duration::ZERO);
    run(&mut g, Duration::from_secs(5));
    assert_eq!(g.state(), State::Master);

    let advert = g.members()[0].advert(150);
    let actions = g
        .on_advert(Duration::from_secs(5), 0, &peer_meta(0), &advert)
        .expect("accepted");
    assert_eq!(
        for_member(&actions, 0),
        vec![
            Action::RemoveAddresses,
            Action::StateChanged {
                from: State::Master,
                to: State::Backup,
                reason: TransitionReason::HigherPriority
            },
        ]
    );
    assert_eq!(
        for_member(&actions, 1),
        vec![
            Action::RemoveAddresses,
            Action::StateChanged {
                from: State::Master,
                to: State::Backup,
                reason: TransitionReason::SyncGroup
            },
        ]
    );
    assert_eq!(g.state(), State::Backup);
}

#[test]
fn one_member_faulting_takes_the_group_to_fault() {
    let mut g = group(100, 200);
    g.start(Duration::ZERO);
    run(&mut g, Duration::from_secs(5));
    let now = Duration::from_secs(5);
    let actions = g.set_fault(now, 1, true);
    for member in [0, 1] {
        let acts = for_member(&actions, member);
        assert_eq!(
            acts[0],
            Action::SendAdvert { priority: 0 },
            "member {member} hands over fast"
        );
        assert_eq!(acts[1], Action::RemoveAddresses);
    }
    assert_eq!(states(&g), vec![State::Fault, State::Fault]);
    assert_eq!(g.state(), State::Fault);
    assert_eq!(g.next_deadline(), None);

    // The other member faults too, then the first recovers: still faulty.
    assert!(g.set_fault(now, 0, true).is_empty());
    assert!(g.set_fault(now + ms(1), 1, false).is_empty());
    assert_eq!(states(&g), vec![State::Fault, State::Fault]);

    // The last fault clears: all go to backup together.
    let later = now + ms(2);
    let actions = g.set_fault(later, 0, false);
    assert_eq!(
        for_member(&actions, 0),
        vec![Action::StateChanged {
            from: State::Fault,
            to: State::Backup,
            reason: TransitionReason::FaultCleared
        }]
    );
    assert_eq!(
        for_member(&actions, 1),
        vec![Action::StateChanged {
            from: State::Fault,
            to: State::Backup,
            reason: TransitionReason::SyncGroup
        }]
    );
    assert_eq!(g.state(), State::Backup);
    assert_eq!(
        g.members()[0].next_deadline(),
        Some(later + g.members()[0].master_down_interval())
    );
}

#[test]
fn a_faulty_member_at_start_keeps_the_group_in_fault() {
    let mut g = group(100, 200);
    g.set_fault(Duration::ZERO, 0, true);
    let actions = g.start(Duration::ZERO);
    assert_eq!(states(&g), vec![State::Fault, State::Fault]);
    assert_eq!(
        for_member(&actions, 1),
        vec![Action::StateChanged {
            from: State::Init,
            to: State::Fault,
            reason: TransitionReason::SyncGroup
        }]
    );
    g.set_fault(ms(1), 0, false);
    assert_eq!(states(&g), vec![State::Backup, State::Backup]);
}

#[test]
fn address_owners_start_as_master_only_if_all_are() {
    let mut g = group(255, 255);
    g.start(Duration::ZERO);
    assert_eq!(states(&g), vec![State::Master, State::Master]);
    assert_eq!(g.state(), State::Master);

    let mut g = group(255, 100);
    g.start(Duration::ZERO);
    assert_eq!(states(&g), vec![State::Backup, State::Backup]);
}

#[test]
fn shutdown_stops_every_member() {
    let mut g = group(100, 200);
    g.start(Duration::ZERO);
    run(&mut g, Duration::from_secs(5));
    let actions = g.shutdown(Duration::from_secs(5));
    for member in [0, 1] {
        assert_eq!(
            for_member(&actions, member)[0],
            Action::SendAdvert { priority: 0 }
        );
    }
    assert_eq!(states(&g), vec![State::Init, State::Init]);
    assert_eq!(g.state(), State::Init);
}

#[test]
fn out_of_range_members_are_ignored() {
    let mut g = group(100, 200);
    g.start(Duration::ZERO);
    assert!(g.set_fault(ms(1), 7, true).is_empty());
    assert!(g.set_priority_delta(ms(1), 7, 10).is_empty());
    let advert = g.members()[0].advert(100);
    assert_eq!(g.on_advert(ms(1), 7, &peer_meta(0), &advert), Ok(vec![]));
}

#[test]
fn priority_delta_reaches_the_member() {
    let mut g = group(100, 200);
    g.start(Duration::ZERO);
    let actions = g.set_priority_delta(ms(1), 1, -50);
    assert_eq!(
        actions,
        vec![GroupAction {
            member: 1,
            action: Action::PriorityChanged { from: 200, to: 150 }
        }]
    );
}
