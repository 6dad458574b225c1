//! Every transition of RFC 5798 section 6.4, with keepalived's choices, on a virtual clock.

use std::net::IpAddr;
use std::time::Duration;

use lb_vrrp::packet::MULTICAST_V4;
use lb_vrrp::{
    Action, AddressCheck, Advert, Auth, ConfigError, DropReason, InitialState, Instance,
    InstanceConfig, IntervalMismatch, RxMeta, State, TransitionReason, Version,
};

const ME: &str = "10.0.0.10";
const VIP: &str = "10.0.0.100";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address literal")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

fn config(priority: u8) -> InstanceConfig {
    InstanceConfig::new(51, priority, ip(ME), vec![ip(VIP)])
}

fn v3_config(priority: u8) -> InstanceConfig {
    let mut cfg = config(priority);
    cfg.version = Version::V3;
    cfg
}

fn started(cfg: InstanceConfig) -> Instance {
    let mut vr = Instance::new(cfg).expect("valid config");
    vr.start(Duration::ZERO);
    vr
}

/// An instance that has become master at time `at`.
fn master(cfg: InstanceConfig) -> (Instance, Duration) {
    let mut vr = started(cfg);
    let at = vr.next_deadline().expect("armed");
    vr.on_timer(at);
    assert_eq!(vr.state(), State::Master);
    (vr, at)
}

/// An advert from a peer configured like `vr` but with another priority.
fn advert_like(vr: &Instance, priority: u8) -> Advert {
    vr.advert(priority)
}

fn mcast_from(src: &str) -> RxMeta {
    RxMeta::new(ip(src), IpAddr::V4(MULTICAST_V4))
}

fn changed(from: State, to: State, reason: TransitionReason) -> Action {
    Action::StateChanged { from, to, reason }
}

// ---- Timers ----

#[test]
fn v2_timers_follow_rfc3768() {
    let vr = started(config(100));
    // Skew_Time = (256 - 100) / 256 s, not scaled by the interval in version 2.
    assert_eq!(vr.skew_time(), us(609_375));
    assert_eq!(
        vr.master_down_interval(),
        Duration::from_secs(3) + us(609_375)
    );

    let mut cfg = config(100);
    cfg.advert_int = Duration::from_secs(2);
    let vr = started(cfg);
    assert_eq!(vr.skew_time(), us(609_375));
    assert_eq!(
        vr.master_down_interval(),
        Duration::from_secs(6) + us(609_375)
    );
}

#[test]
fn v3_timers_follow_rfc5798() {
    let mut cfg = v3_config(100);
    cfg.advert_int = ms(500);
    let vr = started(cfg);
    // Skew_Time = (256 - 100) * 50 cs / 256 = 30.46875 cs.
    assert_eq!(vr.skew_time(), us(304_687));
    assert_eq!(vr.master_down_interval(), ms(1500) + us(304_687));
    assert_eq!(vr.next_deadline(), Some(vr.master_down_interval()));
}

#[test]
fn down_timer_adverts_scales_the_interval() {
    let mut cfg = config(100);
    cfg.down_timer_adverts = 5;
    assert_eq!(
        started(cfg).master_down_interval(),
        Duration::from_secs(5) + us(609_375)
    );
}

// ---- Init ----

#[test]
fn init_goes_to_backup() {
    let mut vr = Instance::new(config(100)).expect("valid");
    assert_eq!(vr.state(), State::Init);
    assert_eq!(vr.next_deadline(), None);
    let actions = vr.start(ms(7));
    assert_eq!(
        actions,
        vec![changed(
            State::Init,
            State::Backup,
            TransitionReason::Started
        )]
    );
    assert_eq!(vr.state(), State::Backup);
    assert_eq!(vr.next_deadline(), Some(ms(7) + vr.master_down_interval()));
    // Starting twice does nothing.
    assert!(vr.start(ms(8)).is_empty());
}

#[test]
fn address_owner_goes_straight_to_master() {
    let mut vr = Instance::new(config(255)).expect("valid");
    let actions = vr.start(Duration::ZERO);
    assert_eq!(
        actions,
        vec![
            Action::SendAdvert { priority: 255 },
            Action::AddAddresses,
            Action::AnnounceAddresses { repeat: 5 },
            changed(State::Init, State::Master, TransitionReason::AddressOwner),
        ]
    );
    assert_eq!(vr.next_deadline(), Some(Duration::from_secs(1)));
}

#[test]
fn address_owner_with_state_backup_waits() {
    let mut cfg = config(255);
    cfg.initial_state = Some(InitialState::Backup);
    let vr = started(cfg);
    assert_eq!(vr.state(), State::Backup);
    assert_eq!(vr.next_deadline(), Some(Duration::from_secs(3) + us(3_906)));
}

#[test]
fn state_master_below_255_waits_like_backup() {
    // keepalived 2.2: only an address owner skips the wait.
    let mut cfg = config(200);
    cfg.initial_state = Some(InitialState::Master);
    let vr = started(cfg);
    assert_eq!(vr.state(), State::Backup);
    assert_eq!(vr.next_deadline(), Some(vr.master_down_interval()));
}

// ---- Backup ----

#[test]
fn backup_takes_over_when_the_master_is_silent() {
    let mut vr = started(config(100));
    let deadline = vr.next_deadline().expect("armed");
    assert!(
        vr.on_timer(deadline - us(1)).is_empty(),
        "early timer calls do nothing"
    );
    assert_eq!(vr.state(), State::Backup);
    let actions = vr.on_timer(deadline);
    assert_eq!(
        actions,
        vec![
            Action::SendAdvert { priority: 100 },
            Action::AddAddresses,
            Action::AnnounceAddresses { repeat: 5 },
            changed(State::Backup, State::Master, TransitionReason::MasterDown),
        ]
    );
    assert_eq!(vr.next_deadline(), Some(deadline + Duration::from_secs(1)));
}

#[test]
fn backup_stays_while_a_higher_or_equal_master_advertises() {
    for master_priority in [100, 150, 255] {
        let mut vr = started(config(100));
        let advert = advert_like(&vr, master_priority);
        let meta = mcast_from("10.0.0.20");
        for second in 1..=30 {
            let now = Duration::from_secs(second);
            vr.on_timer(now);
            assert_eq!(vr.on_advert(now, &meta, &advert), Ok(vec![]));
            assert_eq!(vr.state(), State::Backup);
            assert_eq!(vr.next_deadline(), Some(now + vr.master_down_interval()));
        }
        assert_eq!(vr.master_address(), Some(ip("10.0.0.20")));
    }
}

#[test]
fn backup_takes_over_after_skew_time_on_priority_zero() {
    let mut vr = started(config(100));
    let now = Duration::from_secs(1);
    vr.on_advert(now, &mcast_from("10.0.0.20"), &advert_like(&vr, 200))
        .expect("accepted");
    vr.on_advert(
        now + ms(500),
        &mcast_from("10.0.0.20"),
        &advert_like(&vr, 0),
    )
    .expect("accepted");
    let takeover = now + ms(500) + us(609_375);
    assert_eq!(vr.next_deadline(), Some(takeover));
    vr.on_timer(takeover);
    assert_eq!(vr.state(), State::Master);
}

#[test]
fn backup_learns_the_masters_interval_in_v3() {
    let mut vr = started(v3_config(100));
    let mut advert = advert_like(&vr, 200);
    advert.advert_int = 25; // 250 ms
    let now = Duration::from_secs(1);
    vr.on_advert(now, &mcast_from("10.0.0.20"), &advert)
        .expect("v3 accepts other intervals");
    assert_eq!(vr.master_advert_interval(), ms(250));
    // 3 * 250 ms + (156 * 25 cs * 625 / 16) us.
    assert_eq!(vr.master_down_interval(), ms(750) + us(152_343));
    assert_eq!(vr.next_deadline(), Some(now + vr.master_down_interval()));

    // After taking over, we advertise our own interval again.
    vr.on_timer(now + vr.master_down_interval());
    assert_eq!(vr.state(), State::Master);
    assert_eq!(vr.master_advert_interval(), Duration::from_secs(1));
}

#[test]
fn backup_preempts_a_lower_priority_master() {
    let mut vr = started(config(200));
    let lower = advert_like(&vr, 100);
    let meta = mcast_from("10.0.0.20");
    let takeover = vr.next_deadline().expect("armed");
    let mut now = ms(500);
    while now < takeover {
        assert_eq!(vr.on_advert(now, &meta, &lower), Ok(vec![]));
        assert_eq!(
            vr.next_deadline(),
            Some(takeover),
            "lower priority adverts do not reset the timer"
        );
        now += Duration::from_secs(1);
    }
    vr.on_timer(takeover);
    assert_eq!(vr.state(), State::Master);
}

#[test]
fn nopreempt_never_takes_over_from_a_live_master() {
    let mut cfg = config(200);
    cfg.nopreempt = true;
    let mut vr = started(cfg);
    let lower = advert_like(&vr, 100);
    let meta = mcast_from("10.0.0.20");
    for second in 1..=60 {
        let now = Duration::from_secs(second);
        vr.on_timer(now);
        vr.on_advert(now, &meta, &lower).expect("accepted");
        assert_eq!(vr.state(), State::Backup);
    }
    // But it still takes over when the master leaves.
    let now = Duration::from_secs(61);
    vr.on_advert(now, &meta, &advert_like(&vr, 0))
        .expect("accepted");
    vr.on_timer(now + vr.skew_time());
    assert_eq!(vr.state(), State::Master);
}

#[test]
fn preempt_delay_tolerates_a_lower_master_for_a_while() {
    let mut cfg = config(200);
    cfg.preempt_delay = Duration::from_secs(10);
    let mut vr = started(cfg);
    let lower = advert_like(&vr, 100);
    let meta = mcast_from("10.0.0.20");
    // keepalived counts the delay from the first lower-priority advert (t = 1 s): adverts up
    // to t = 10 s are accepted, from t = 11 s on they are ignored.
    for second in 1..=20 {
        let now = Duration::from_secs(second);
        vr.on_timer(now);
        if vr.state() == State::Master {
            break;
        }
        vr.on_advert(now, &meta, &lower).expect("accepted");
    }
    assert_eq!(vr.state(), State::Master);

    let mut vr = started({
        let mut cfg = config(200);
        cfg.preempt_delay = Duration::from_secs(10);
        cfg
    });
    let mut takeover = None;
    for tenth in 10..=200 {
        let now = ms(tenth * 100);
        if vr.next_deadline().is_some_and(|d| d <= now) {
            vr.on_timer(now);
        }
        if vr.state() == State::Master {
            takeover = Some(now);
            break;
        }
        if tenth % 10 == 0 {
            vr.on_advert(now, &meta, &lower).expect("accepted");
        }
    }
    // Last accepted advert at 10 s, then Master_Down_Interval = 3.21875 s.
    assert_eq!(takeover, Some(ms(13_300)));
}

#[test]
fn preempt_delay_restarts_after_a_higher_priority_advert() {
    let mut cfg = config(200);
    cfg.preempt_delay = Duration::from_secs(5);
    let mut vr = started(cfg);
    let meta = mcast_from("10.0.0.20");
    vr.on_advert(Duration::from_secs(1), &meta, &advert_like(&vr, 100))
        .expect("accepted");
    // A higher master clears the pending delay...
    vr.on_advert(Duration::from_secs(2), &meta, &advert_like(&vr, 250))
        .expect("accepted");
    // ...so the lower master seen at 7 s starts a fresh 5 s delay and is still tolerated.
    vr.on_advert(Duration::from_secs(7), &meta, &advert_like(&vr, 100))
        .expect("accepted");
    vr.on_advert(Duration::from_secs(8), &meta, &advert_like(&vr, 100))
        .expect("accepted");
    assert_eq!(
        vr.next_deadline(),
        Some(Duration::from_secs(8) + vr.master_down_interval())
    );
}

// ---- Master ----

#[test]
fn master_advertises_every_interval() {
    let mut cfg = config(100);
    cfg.announce.master_delay = Duration::ZERO;
    let (mut vr, at) = master(cfg);
    for n in 1..=5u32 {
        let due = at + Duration::from_secs(n.into());
        assert_eq!(vr.next_deadline(), Some(due));
        assert_eq!(vr.on_timer(due), vec![Action::SendAdvert { priority: 100 }]);
    }
}

#[test]
fn master_steps_down_for_a_higher_priority() {
    let (mut vr, at) = master(config(100));
    let now = at + ms(300);
    let actions = vr
        .on_advert(now, &mcast_from("10.0.0.5"), &advert_like(&vr, 101))
        .expect("accepted");
    assert_eq!(
        actions,
        vec![
            Action::RemoveAddresses,
            changed(
                State::Master,
                State::Backup,
                TransitionReason::HigherPriority
            )
        ]
    );
    assert_eq!(vr.next_deadline(), Some(now + vr.master_down_interval()));
    assert_eq!(vr.master_address(), Some(ip("10.0.0.5")));
}

#[test]
fn master_tie_break_by_primary_address() {
    // Equal priority from a greater address: step down (this is how split brain heals).
    let (mut vr, at) = master(config(100));
    let actions = vr
        .on_advert(at, &mcast_from("10.0.0.11"), &advert_like(&vr, 100))
        .expect("accepted");
    assert_eq!(
        actions.last(),
        Some(&changed(
            State::Master,
            State::Backup,
            TransitionReason::HigherAddress
        ))
    );

    // Equal priority from a smaller address: stay, and answer so the other side steps down.
    let (mut vr, at) = master(config(100));
    let actions = vr
        .on_advert(at, &mcast_from("10.0.0.9"), &advert_like(&vr, 100))
        .expect("accepted");
    assert_eq!(actions[0], Action::SendAdvert { priority: 100 });
    assert_eq!(vr.state(), State::Master);
}

#[test]
fn master_answers_a_lower_priority_at_once() {
    let (mut vr, at) = master(config(100));
    let now = at + ms(400);
    let actions = vr
        .on_advert(now, &mcast_from("10.0.0.20"), &advert_like(&vr, 50))
        .expect("accepted");
    assert_eq!(
        actions,
        vec![
            Action::SendAdvert { priority: 100 },
            Action::AnnounceAddresses { repeat: 5 }
        ]
    );
    assert_eq!(vr.state(), State::Master);
    // The advert timer restarts from the answer; the delayed announcement is due in 5 s.
    assert_eq!(vr.next_deadline(), Some(now + Duration::from_secs(1)));

    let mut cfg = config(100);
    cfg.lower_prio_no_advert = true;
    cfg.announce.lower_prio_repeat = 0;
    let (mut vr, at) = master(cfg);
    let actions = vr
        .on_advert(
            at + ms(400),
            &mcast_from("10.0.0.20"),
            &advert_like(&vr, 50),
        )
        .expect("accepted");
    assert!(actions.is_empty());
    assert_eq!(vr.next_deadline(), Some(at + Duration::from_secs(1)));
}

#[test]
fn master_answers_priority_zero_at_once() {
    let (mut vr, at) = master(config(100));
    let now = at + ms(200);
    let actions = vr
        .on_advert(now, &mcast_from("10.0.0.20"), &advert_like(&vr, 0))
        .expect("accepted");
    assert_eq!(actions, vec![Action::SendAdvert { priority: 100 }]);
    assert_eq!(vr.state(), State::Master);
    assert_eq!(vr.next_deadline(), Some(now + Duration::from_secs(1)));
}

#[test]
fn higher_prio_send_advert_sends_before_stepping_down() {
    let mut cfg = config(100);
    cfg.higher_prio_send_advert = true;
    let (mut vr, at) = master(cfg);
    let actions = vr
        .on_advert(at, &mcast_from("10.0.0.20"), &advert_like(&vr, 200))
        .expect("accepted");
    assert_eq!(actions[0], Action::SendAdvert { priority: 100 });
    assert_eq!(vr.state(), State::Backup);
}

#[test]
fn two_address_owners_resolve_by_lowering_one() {
    let (mut vr, at) = master(config(255));
    let actions = vr
        .on_advert(at, &mcast_from("10.0.0.20"), &advert_like(&vr, 255))
        .expect("accepted");
    assert_eq!(actions[0], Action::PriorityChanged { from: 255, to: 254 });
    assert_eq!(vr.base_priority(), 254);
    assert_eq!(vr.state(), State::Backup);
}

#[test]
fn delayed_and_refresh_announcements() {
    let mut cfg = config(100);
    cfg.announce.master_delay = Duration::from_secs(5);
    cfg.announce.master_refresh = Duration::from_secs(3);
    cfg.announce.master_refresh_repeat = 2;
    let (mut vr, at) = master(cfg);
    let mut announced = Vec::new();
    let end = at + Duration::from_secs(10);
    while let Some(due) = vr.next_deadline().filter(|&d| d <= end) {
        for action in vr.on_timer(due) {
            if let Action::AnnounceAddresses { repeat } = action {
                announced.push((due - at, repeat));
            }
        }
    }
    // Refresh at the first advert after 3 s and 6 s and 9 s; the second burst at 5 s.
    let secs = Duration::from_secs;
    assert_eq!(
        announced,
        vec![(secs(3), 2), (secs(5), 5), (secs(6), 2), (secs(9), 2)]
    );
}

#[test]
fn leaving_master_cancels_pending_announcements() {
    let (mut vr, at) = master(config(100));
    vr.on_advert(
        at + ms(10),
        &mcast_from("10.0.0.20"),
        &advert_like(&vr, 200),
    )
    .expect("accepted");
    assert_eq!(vr.state(), State::Backup);
    // Only the down timer remains, not the 5 s delayed burst.
    assert_eq!(
        vr.next_deadline(),
        Some(at + ms(10) + vr.master_down_interval())
    );
}

// ---- Fault ----

#[test]
fn fault_before_start_starts_in_fault() {
    let mut vr = Instance::new(config(100)).expect("valid");
    assert!(vr.set_fault(Duration::ZERO, true).is_empty());
    let actions = vr.start(Duration::ZERO);
    assert_eq!(
        actions,
        vec![changed(State::Init, State::Fault, TransitionReason::Fault)]
    );
    assert_eq!(vr.next_deadline(), None);
}

#[test]
fn fault_from_backup_is_silent_and_ignores_adverts() {
    let mut vr = started(config(100));
    let actions = vr.set_fault(Duration::from_secs(1), true);
    assert_eq!(
        actions,
        vec![changed(
            State::Backup,
            State::Fault,
            TransitionReason::Fault
        )]
    );
    assert_eq!(vr.next_deadline(), None);
    assert!(
        vr.set_fault(Duration::from_secs(1), true).is_empty(),
        "level-triggered"
    );
    let advert = advert_like(&vr, 0);
    assert_eq!(
        vr.on_advert(Duration::from_secs(2), &mcast_from("10.0.0.20"), &advert),
        Ok(vec![])
    );
    assert_eq!(vr.state(), State::Fault);
}

#[test]
fn fault_from_master_hands_over() {
    let (mut vr, at) = master(config(100));
    let actions = vr.set_fault(at + ms(100), true);
    assert_eq!(
        actions,
        vec![
            Action::SendAdvert { priority: 0 },
            Action::RemoveAddresses,
            changed(State::Master, State::Fault, TransitionReason::Fault),
        ]
    );
    assert_eq!(vr.next_deadline(), None);
}

#[test]
fn clearing_a_fault_returns_to_backup() {
    let mut vr = started(config(100));
    vr.set_fault(Duration::from_secs(1), true);
    let now = Duration::from_secs(4);
    let actions = vr.set_fault(now, false);
    assert_eq!(
        actions,
        vec![changed(
            State::Fault,
            State::Backup,
            TransitionReason::FaultCleared
        )]
    );
    assert_eq!(vr.next_deadline(), Some(now + vr.master_down_interval()));
}

#[test]
fn clearing_a_fault_makes_an_owner_master_at_once() {
    let mut vr = started(config(255));
    vr.set_fault(Duration::from_secs(1), true);
    let actions = vr.set_fault(Duration::from_secs(2), false);
    assert_eq!(
        actions.last(),
        Some(&changed(
            State::Fault,
            State::Master,
            TransitionReason::AddressOwner
        ))
    );
}

// ---- Priority ----

#[test]
fn priority_delta_is_clamped() {
    let mut vr = started(config(100));
    assert_eq!(
        vr.set_priority_delta(Duration::ZERO, 50),
        vec![Action::PriorityChanged { from: 100, to: 150 }]
    );
    vr.set_priority_delta(Duration::ZERO, 500);
    assert_eq!(vr.effective_priority(), 254);
    vr.set_priority_delta(Duration::ZERO, -500);
    assert_eq!(vr.effective_priority(), 1);
    assert!(
        vr.set_priority_delta(Duration::ZERO, -400).is_empty(),
        "no change, no action"
    );

    let mut owner = started(config(255));
    assert!(owner.set_priority_delta(Duration::ZERO, -100).is_empty());
    assert_eq!(owner.effective_priority(), 255);
}

#[test]
fn priority_change_moves_the_down_timer_by_the_skew_difference() {
    let mut vr = started(config(100));
    let before = vr.next_deadline().expect("armed");
    vr.set_priority_delta(ms(10), 100); // 100 -> 200: skew 609375 us -> 218750 us
    assert_eq!(vr.next_deadline(), Some(before - us(609_375 - 218_750)));
}

#[test]
fn master_priority_drop_lets_a_backup_preempt() {
    // A (master, 150) drops to 90; B (backup, 100) then ignores A's adverts and takes over.
    let (mut a, at) = master(config(150));
    let mut b_cfg = config(100);
    b_cfg.primary_address = ip("10.0.0.20");
    let mut b = started(b_cfg);
    let from_a = mcast_from(ME);
    let from_b = mcast_from("10.0.0.20");

    let mut now = at;
    b.on_advert(now, &from_a, &a.advert(150)).expect("accepted");
    a.set_priority_delta(now + ms(100), -60);
    assert_eq!(a.effective_priority(), 90);
    let last_accepted = now;
    let mut b_took_over = None;
    while b_took_over.is_none() && now < Duration::from_secs(30) {
        now = a
            .next_deadline()
            .expect("a armed")
            .min(b.next_deadline().expect("b armed"));
        for action in a.on_timer(now) {
            if let Action::SendAdvert { priority } = action {
                b.on_advert(now, &from_a, &a.advert(priority))
                    .expect("accepted");
            }
        }
        for action in b.on_timer(now) {
            if let Action::SendAdvert { priority } = action {
                b_took_over = Some(now);
                a.on_advert(now, &from_b, &b.advert(priority))
                    .expect("accepted");
            }
        }
    }
    assert_eq!(b_took_over, Some(last_accepted + b.master_down_interval()));
    assert_eq!(b.state(), State::Master);
    assert_eq!(a.state(), State::Backup);
}

// ---- Shutdown ----

#[test]
fn shutdown_sends_priority_zero_from_master() {
    let (mut vr, at) = master(config(100));
    let actions = vr.shutdown(at + ms(1));
    assert_eq!(
        actions,
        vec![
            Action::SendAdvert { priority: 0 },
            Action::RemoveAddresses,
            changed(State::Master, State::Init, TransitionReason::Shutdown),
        ]
    );
    assert_eq!(vr.next_deadline(), None);
    // It can be started again.
    vr.start(at + ms(2));
    assert_eq!(vr.state(), State::Backup);
}

#[test]
fn shutdown_from_backup_is_silent() {
    let mut vr = started(config(100));
    assert_eq!(
        vr.shutdown(ms(1)),
        vec![changed(
            State::Backup,
            State::Init,
            TransitionReason::Shutdown
        )]
    );
    assert!(vr.shutdown(ms(2)).is_empty());
}

// ---- Checks ----

#[test]
fn checks_reject_what_keepalived_rejects() {
    let vr = started(config(100));
    let meta = mcast_from("10.0.0.20");
    let good = advert_like(&vr, 100);
    assert_eq!(vr.check(&meta, &good), Ok(()));

    let mut a = good.clone();
    a.vrid = 52;
    assert_eq!(vr.check(&meta, &a), Err(DropReason::WrongVrid));

    let mut a = good.clone();
    a.version = Version::V3;
    assert_eq!(vr.check(&meta, &a), Err(DropReason::VersionMismatch));

    let mut a = good.clone();
    a.auth = Auth::simple_password(b"secret");
    assert_eq!(vr.check(&meta, &a), Err(DropReason::AuthTypeMismatch));

    let mut a = good.clone();
    a.advert_int = 2;
    assert_eq!(vr.check(&meta, &a), Err(DropReason::AdvertIntervalMismatch));

    let mut a = good.clone();
    a.addresses = vec![ip("10.0.0.101")];
    assert_eq!(vr.check(&meta, &a), Err(DropReason::AddressListMismatch));
    a.addresses = vec![ip(VIP), ip("10.0.0.101")];
    assert_eq!(vr.check(&meta, &a), Err(DropReason::AddressListMismatch));

    let unicast = RxMeta::new(ip("10.0.0.20"), ip(ME));
    assert_eq!(
        vr.check(&unicast, &good),
        Err(DropReason::MulticastUnicastMismatch)
    );

    let v6 = RxMeta::new(ip("fe80::1"), ip("ff02::12"));
    assert_eq!(vr.check(&v6, &good), Err(DropReason::FamilyMismatch));

    // Our own advert looped back.
    assert_eq!(
        vr.check(&mcast_from(ME), &good),
        Err(DropReason::OwnAddress)
    );
}

#[test]
fn password_checks() {
    let mut cfg = config(100);
    cfg.auth = Auth::simple_password(b"kpa12345");
    let vr = started(cfg);
    let meta = mcast_from("10.0.0.20");
    let mut a = advert_like(&vr, 100);
    assert_eq!(vr.check(&meta, &a), Ok(()));
    a.auth = Auth::simple_password(b"kpa12346");
    assert_eq!(vr.check(&meta, &a), Err(DropReason::AuthMismatch));
    a.auth = Auth::None;
    assert_eq!(vr.check(&meta, &a), Err(DropReason::AuthTypeMismatch));
}

#[test]
fn check_policies() {
    let mut cfg = config(100);
    cfg.interval_mismatch = IntervalMismatch::Accept;
    cfg.address_check = AddressCheck::Never;
    let vr = started(cfg);
    let mut a = advert_like(&vr, 100);
    a.advert_int = 3;
    a.addresses.clear();
    assert_eq!(vr.check(&mcast_from("10.0.0.20"), &a), Ok(()));

    // SkipSameMaster: the first advert from a master is checked, later ones are not.
    let mut cfg = config(100);
    cfg.address_check = AddressCheck::SkipSameMaster;
    let mut vr = started(cfg);
    let meta = mcast_from("10.0.0.20");
    let mut odd = advert_like(&vr, 200);
    odd.addresses = vec![ip("10.0.0.199")];
    assert_eq!(
        vr.on_advert(ms(1), &meta, &odd),
        Err(DropReason::AddressListMismatch)
    );
    vr.on_advert(ms(2), &meta, &advert_like(&vr, 200))
        .expect("accepted");
    assert_eq!(vr.on_advert(ms(3), &meta, &odd), Ok(vec![]));
    assert_eq!(
        vr.on_advert(ms(4), &mcast_from("10.0.0.21"), &odd),
        Err(DropReason::AddressListMismatch)
    );
}

#[test]
fn unicast_checks() {
    let mut cfg = config(100);
    cfg.unicast_peers = vec![ip("10.0.0.20")];
    let vr = started(cfg);
    let a = advert_like(&vr, 100);
    assert_eq!(vr.check(&RxMeta::new(ip("10.0.0.20"), ip(ME)), &a), Ok(()));
    assert_eq!(
        vr.check(&RxMeta::new(ip("10.0.0.30"), ip(ME)), &a),
        Err(DropReason::NotAPeer)
    );
    assert_eq!(
        vr.check(&mcast_from("10.0.0.20"), &a),
        Err(DropReason::MulticastUnicastMismatch)
    );
    assert_eq!(vr.destinations(), vec![ip("10.0.0.20")]);

    let mut cfg = config(100);
    cfg.unicast_peers = vec![ip("10.0.0.20")];
    cfg.check_unicast_src = false;
    let vr = started(cfg);
    assert_eq!(vr.check(&RxMeta::new(ip("10.0.0.30"), ip(ME)), &a), Ok(()));
}

#[test]
fn rejected_adverts_do_not_touch_the_timers() {
    let mut vr = started(config(100));
    let deadline = vr.next_deadline();
    let mut a = advert_like(&vr, 200);
    a.vrid = 9;
    assert_eq!(
        vr.on_advert(ms(500), &mcast_from("10.0.0.20"), &a),
        Err(DropReason::WrongVrid)
    );
    assert_eq!(vr.next_deadline(), deadline);
    let bytes = [0u8; 3];
    assert_eq!(
        vr.on_packet(ms(600), &bytes, &mcast_from("10.0.0.20")),
        Err(DropReason::BadLength)
    );
    assert_eq!(vr.next_deadline(), deadline);
}

// ---- Configuration ----

#[test]
fn config_validation() {
    let bad = |f: &dyn Fn(&mut InstanceConfig)| {
        let mut cfg = config(100);
        f(&mut cfg);
        Instance::new(cfg).err()
    };
    assert_eq!(bad(&|c| c.vrid = 0), Some(ConfigError::VridZero));
    assert_eq!(bad(&|c| c.priority = 0), Some(ConfigError::PriorityZero));
    assert_eq!(
        bad(&|c| c.advert_int = ms(1500)),
        Some(ConfigError::AdvertIntervalV2(ms(1500)))
    );
    assert_eq!(
        bad(&|c| c.advert_int = Duration::from_secs(256)),
        Some(ConfigError::AdvertIntervalV2(Duration::from_secs(256)))
    );
    assert_eq!(
        bad(&|c| {
            c.version = Version::V3;
            c.advert_int = ms(15);
        }),
        Some(ConfigError::AdvertIntervalV3(ms(15)))
    );
    assert_eq!(
        bad(&|c| {
            c.version = Version::V3;
            c.advert_int = ms(41_000);
        }),
        Some(ConfigError::AdvertIntervalV3(ms(41_000)))
    );
    assert_eq!(
        bad(&|c| {
            c.version = Version::V3;
            c.auth = Auth::simple_password(b"x");
        }),
        Some(ConfigError::AuthRequiresV2)
    );
    assert_eq!(
        bad(&|c| {
            c.version = Version::V3;
            c.virtual_addresses.clear();
        }),
        Some(ConfigError::NoVirtualAddresses)
    );
    assert_eq!(
        bad(&|c| c.virtual_addresses.push(ip("2001:db8::1"))),
        Some(ConfigError::VirtualAddressFamily(ip("2001:db8::1")))
    );
    assert_eq!(
        bad(&|c| c.unicast_peers.push(ip("2001:db8::1"))),
        Some(ConfigError::PeerFamily(ip("2001:db8::1")))
    );
    assert_eq!(
        bad(&|c| c.primary_address = ip("fe80::1")),
        Some(ConfigError::V2OverIpv6)
    );
    assert_eq!(
        bad(&|c| c.down_timer_adverts = 0),
        Some(ConfigError::DownTimerAdverts(0))
    );

    // IPv6 defaults to version 3.
    let v6 = InstanceConfig::new(1, 100, ip("fe80::1"), vec![ip("2001:db8::100")]);
    assert_eq!(v6.version, Version::V3);
    assert!(Instance::new(v6).is_ok());
}

#[test]
fn config_normalisation_like_keepalived() {
    let mut cfg = config(255);
    cfg.nopreempt = true;
    assert!(!Instance::new(cfg).expect("valid").config().nopreempt);

    let mut cfg = config(100);
    cfg.nopreempt = true;
    cfg.preempt_delay = Duration::from_secs(5);
    let vr = Instance::new(cfg).expect("valid");
    assert!(vr.config().nopreempt);
    assert_eq!(vr.config().preempt_delay, Duration::ZERO);

    let mut cfg = config(100);
    cfg.initial_state = Some(InitialState::Master);
    cfg.nopreempt = true;
    assert!(!Instance::new(cfg).expect("valid").config().nopreempt);
}

#[test]
fn ipv6_adverts_go_to_ff02_12() {
    let cfg = InstanceConfig::new(
        61,
        150,
        ip("fe80::77:ff:fe00:11"),
        vec![ip("fd77::100"), ip("fd77::101")],
    );
    let vr = started(cfg);
    let sent = vr.encode_adverts(150).expect("encodes");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].dst, ip("ff02::12"));
    let meta = RxMeta::new(ip("fe80::77:ff:fe00:11"), ip("ff02::12"));
    let advert = lb_vrrp::decode(&sent[0].payload, &meta).expect("decodes");
    assert_eq!(advert, vr.advert(150));
}

#[test]
fn a_restarted_master_resumes_without_waiting() {
    let mut vr = Instance::new(config(100)).expect("valid config");
    let actions = vr.resume_master(ms(5));
    assert_eq!(vr.state(), State::Master);
    assert_eq!(actions[0], Action::SendAdvert { priority: 100 });
    assert!(actions.contains(&Action::StateChanged {
        from: State::Init,
        to: State::Master,
        reason: TransitionReason::Resumed,
    }));
    // Then it advertises on its interval like any master.
    assert_eq!(vr.next_deadline(), Some(ms(5) + Duration::from_secs(1)));
}

#[test]
fn a_faulty_instance_does_not_resume_as_master() {
    let mut vr = Instance::new(config(100)).expect("valid config");
    vr.set_fault(ms(0), true);
    vr.resume_master(ms(5));
    assert_eq!(vr.state(), State::Fault);
}

#[test]
fn a_master_advertises_on_a_grid_without_drift() {
    let mut vr = Instance::new(config(255)).expect("valid config");
    vr.start(ms(0));
    assert_eq!(vr.state(), State::Master);
    // Woken 3 ms late every time: the adverts stay on the 1 s grid.
    for n in 1..=5u64 {
        let due = vr.next_deadline().unwrap();
        assert_eq!(due, Duration::from_secs(n));
        vr.on_timer(due + ms(3));
    }
    // A stall of more than an interval starts a new grid instead of a burst.
    let due = vr.next_deadline().unwrap();
    vr.on_timer(due + ms(2500));
    assert_eq!(
        vr.next_deadline(),
        Some(due + ms(2500) + Duration::from_secs(1))
    );
}
