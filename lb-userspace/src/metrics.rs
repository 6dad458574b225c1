//! Prometheus `/metrics`: the daemon's [`Status`] in the OpenMetrics text format, with the
//! keepalived exporter's names and labels for VRRP (so its dashboards and alerts carry over),
//! node_exporter's IPVS label names for services and real servers, and xlb's own.
//!
//! Each scrape asks the daemon for its status and builds a fresh registry from it: the daemon
//! keeps no metric objects of its own, and a scrape never sees half an update.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use anyhow::{Context as _, Result};
use http_body_util::Full;
use hyper::{Request as HttpRequest, Response as HttpResponse, body::Bytes, service::service_fn};
use hyper_util::rt::TokioIo;
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
};

use crate::{
    control::{Incoming, Request, Response},
    status::Status,
};

type Labels = Vec<(String, String)>;

/// A family of one kind of metric, its samples added label set by label set.
struct Metric<M> {
    family: Family<Labels, M>,
}

impl<M: Default + Clone + prometheus_client::metrics::TypedMetric> Metric<M>
where
    Family<Labels, M>: prometheus_client::registry::Metric,
{
    fn new(registry: &mut Registry, name: &str, help: &str) -> Self {
        let family = Family::<Labels, M>::default();
        registry.register(name, help, family.clone());
        Self { family }
    }
}

impl Metric<Counter> {
    fn add(&self, labels: &[(&str, String)], value: u64) {
        self.family.get_or_create(&owned(labels)).inc_by(value);
    }
}

impl Metric<Gauge> {
    fn set(&self, labels: &[(&str, String)], value: i64) {
        self.family.get_or_create(&owned(labels)).set(value);
    }
}

impl Metric<Gauge<f64, std::sync::atomic::AtomicU64>> {
    fn set_f64(&self, labels: &[(&str, String)], value: f64) {
        self.family.get_or_create(&owned(labels)).set(value);
    }
}

fn owned(labels: &[(&str, String)]) -> Labels {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// keepalived's error counters: the drop reason each counts, its name and help.
const KEEPALIVED_ERRORS: [(&str, &str, &str); 8] = [
    (
        "bad_length",
        "keepalived_packet_length_errors",
        "Adverts dropped for a bad length.",
    ),
    (
        "advert_interval_mismatch",
        "keepalived_advertisements_interval_errors",
        "Adverts dropped for another advertisement interval.",
    ),
    (
        "ttl_not_255",
        "keepalived_ip_ttl_errors",
        "Adverts dropped for a TTL not 255.",
    ),
    (
        "unknown_type",
        "keepalived_invalid_type_received",
        "Packets of an unknown VRRP type.",
    ),
    (
        "address_list_mismatch",
        "keepalived_address_list_errors",
        "Adverts dropped for another address list.",
    ),
    (
        "invalid_auth_type",
        "keepalived_authentication_invalid",
        "Adverts with an invalid authentication type.",
    ),
    (
        "auth_type_mismatch",
        "keepalived_authentication_mismatch",
        "Adverts with another authentication type.",
    ),
    (
        "auth_mismatch",
        "keepalived_authentication_failure",
        "Adverts with a wrong password.",
    ),
];

fn vrrp_state_value(state: &str) -> i64 {
    match state {
        "BACKUP" => 1,
        "MASTER" => 2,
        "FAULT" => 3,
        _ => 0,
    }
}

/// The text exposition of `s`.
pub fn render(s: &Status) -> String {
    let mut r = Registry::default();
    type GaugeF = Gauge<f64, std::sync::atomic::AtomicU64>;

    // VRRP, as the keepalived exporter names it.
    let state = Metric::<Gauge>::new(
        &mut r,
        "keepalived_vrrp_state",
        "VRRP instance state: 0 init, 1 backup, 2 master, 3 fault.",
    );
    let received = Metric::<Counter>::new(
        &mut r,
        "keepalived_advertisements_received",
        "Adverts received.",
    );
    let sent = Metric::<Counter>::new(&mut r, "keepalived_advertisements_sent", "Adverts sent.");
    let became =
        Metric::<Counter>::new(&mut r, "keepalived_become_master", "Transitions to MASTER.");
    let released = Metric::<Counter>::new(
        &mut r,
        "keepalived_release_master",
        "Transitions from MASTER.",
    );
    let prio0_rx = Metric::<Counter>::new(
        &mut r,
        "keepalived_priority_zero_received",
        "Adverts of priority 0 received.",
    );
    let prio0_tx = Metric::<Counter>::new(
        &mut r,
        "keepalived_priority_zero_sent",
        "Adverts of priority 0 sent.",
    );
    // keepalived's error counters, each present for every instance (as the exporter does).
    let errors: Vec<(&str, Metric<Counter>)> = KEEPALIVED_ERRORS
        .iter()
        .map(|(reason, name, help)| (*reason, Metric::<Counter>::new(&mut r, name, help)))
        .collect();
    let other_drops = Metric::<Counter>::new(
        &mut r,
        "xlb_vrrp_dropped",
        "VRRP packets dropped, by reason (those keepalived counts under a name of its own \
         are there too).",
    );
    let up = Metric::<Gauge>::new(&mut r, "keepalived_up", "1: the VRRP daemon answers.");
    up.set(&[], 1);
    for vi in &s.vrrp {
        // The exporter labels counters with the instance's state name.
        let base = [
            ("iname", vi.name.clone()),
            ("intf", vi.interface.clone()),
            ("vrid", vi.vrid.to_string()),
            ("state", vi.state.clone()),
        ];
        for vip in &vi.vips {
            let ip = vip.split('/').next().unwrap_or(vip).to_string();
            let labels = [
                base[0].clone(),
                base[1].clone(),
                base[2].clone(),
                ("ip_address", ip),
            ];
            state.set(&labels, vrrp_state_value(&vi.state));
        }
        received.add(&base, vi.adverts_received);
        sent.add(&base, vi.adverts_sent);
        became.add(&base, vi.become_master);
        released.add(&base, vi.release_master);
        prio0_rx.add(&base, vi.priority_zero_received);
        prio0_tx.add(&base, vi.priority_zero_sent);
        for (reason, metric) in &errors {
            metric.add(&base, vi.dropped.get(*reason).copied().unwrap_or(0));
        }
        for (reason, n) in &vi.dropped {
            let labels = [
                base[0].clone(),
                base[1].clone(),
                base[2].clone(),
                ("reason", reason.clone()),
            ];
            other_drops.add(&labels, *n);
        }
    }
    let script_status = Metric::<Gauge>::new(
        &mut r,
        "keepalived_script_status",
        "Tracked vrrp_script: 1 good, 0 bad.",
    );
    let script_state = Metric::<Gauge>::new(
        &mut r,
        "keepalived_script_state",
        "Tracked vrrp_script: 0 idle (xlb runs each on its own timer).",
    );
    for (name, ok) in &s.vrrp_scripts {
        script_status.set(&[("name", name.clone())], i64::from(*ok));
        script_state.set(&[("name", name.clone())], 0);
    }
    for (reason, n) in &s.dataplane.vrrp_dropped {
        other_drops.add(&[("reason", reason.clone())], *n);
    }

    // Services and real servers, with node_exporter's IPVS labels.
    let svc_packets = Metric::<Counter>::new(
        &mut r,
        "xlb_service_incoming_packets",
        "Packets to a virtual service.",
    );
    let svc_bytes = Metric::<Counter>::new(
        &mut r,
        "xlb_service_incoming_bytes",
        "Bytes to a virtual service.",
    );
    let svc_conns = Metric::<Counter>::new(
        &mut r,
        "xlb_service_connections",
        "Connections placed for a virtual service.",
    );
    let checksum = Metric::<Gauge>::new(
        &mut r,
        "xlb_maglev_table_checksum",
        "FNV-1a of the service's Maglev table: equal on directors that place flows alike.",
    );
    let be_packets = Metric::<Counter>::new(
        &mut r,
        "xlb_backend_incoming_packets",
        "Packets forwarded to a real server of a virtual service.",
    );
    let be_bytes = Metric::<Counter>::new(
        &mut r,
        "xlb_backend_incoming_bytes",
        "Bytes forwarded to a real server of a virtual service.",
    );
    let be_out_packets = Metric::<Counter>::new(
        &mut r,
        "xlb_backend_outgoing_packets",
        "Replies of a NAT real server translated back to clients (DR replies bypass xlb).",
    );
    let be_out_bytes = Metric::<Counter>::new(
        &mut r,
        "xlb_backend_outgoing_bytes",
        "Bytes of a NAT real server's replies translated back to clients.",
    );
    let be_conns = Metric::<Counter>::new(
        &mut r,
        "xlb_backend_connections",
        "Connections placed on a real server of a virtual service.",
    );
    let be_weight = Metric::<Gauge>::new(
        &mut r,
        "xlb_backend_weight",
        "The weight the real server's table entries follow now (0: down, drained, draining).",
    );
    let be_up = Metric::<Gauge>::new(
        &mut r,
        "xlb_backend_up",
        "1 while the real server passes its health checks and is resolved.",
    );
    let be_active = Metric::<Gauge>::new(
        &mut r,
        "xlb_backend_connections_active",
        "Remembered connections that sent a packet in the last 60 s.",
    );
    let be_inactive = Metric::<Gauge>::new(
        &mut r,
        "xlb_backend_connections_inactive",
        "Remembered connections idle longer than 60 s.",
    );
    let check_duration = Metric::<GaugeF>::new(
        &mut r,
        "xlb_health_check_duration_seconds",
        "How long the real server's last health check took.",
    );
    for svc in &s.services {
        let local = [
            ("local_address", svc.address.to_string()),
            ("local_port", svc.port.to_string()),
            ("proto", svc.protocol.clone()),
        ];
        svc_packets.add(&local, svc.traffic.in_packets);
        svc_bytes.add(&local, svc.traffic.in_bytes);
        svc_conns.add(&local, svc.traffic.conns);
        if let Some(sum) = svc.table_checksum {
            checksum.set(&local, i64::from(sum));
        }
        for rs in &svc.real_servers {
            let mut labels = local.to_vec();
            labels.push(("remote_address", rs.address.to_string()));
            labels.push(("remote_port", rs.port.to_string()));
            be_packets.add(&labels, rs.traffic.in_packets);
            be_bytes.add(&labels, rs.traffic.in_bytes);
            be_out_packets.add(&labels, rs.traffic.out_packets);
            be_out_bytes.add(&labels, rs.traffic.out_bytes);
            be_conns.add(&labels, rs.traffic.conns);
            be_weight.set(&labels, i64::from(rs.effective_weight));
            be_up.set(&labels, i64::from(rs.state == "up" || rs.state == "sorry"));
            be_active.set(&labels, rs.active_conns as i64);
            be_inactive.set(&labels, rs.inactive_conns as i64);
            if let Some(check) = &rs.last_check {
                check_duration.set_f64(&labels, check.duration_seconds);
            }
        }
    }

    // The data plane.
    let packets = Metric::<Counter>::new(
        &mut r,
        "xlb_packets",
        "Packets by what the XDP program did with them.",
    );
    for (outcome, n) in &s.dataplane.outcomes {
        packets.add(&[("outcome", outcome.clone())], *n);
    }
    let events = Metric::<Counter>::new(
        &mut r,
        "xlb_flow_events",
        "Flows placed by Maglev rather than found in the flow table, by why.",
    );
    for (event, n) in &s.dataplane.flow_events {
        events.add(&[("event", event.clone())], *n);
    }
    let entries = Metric::<Gauge>::new(
        &mut r,
        "xlb_flow_table_entries",
        "Connections the flow table holds.",
    );
    entries.set(&[], s.dataplane.flow_table_entries as i64);
    let size = Metric::<Gauge>::new(
        &mut r,
        "xlb_flow_table_size",
        "Connections the flow table can hold.",
    );
    size.set(&[], i64::from(s.dataplane.flow_table_size));
    if let Some(a) = &s.announce {
        let announced = Metric::<Gauge>::new(
            &mut r,
            "xlb_vip_announced",
            "1 while this director has BIRD announce the VIP (xlb_announce), 0 while withdrawn.",
        );
        for vip in &a.vips {
            announced.set(
                &[("address", vip.address.to_string())],
                i64::from(vip.announced),
            );
        }
        let session = Metric::<Gauge>::new(
            &mut r,
            "xlb_bgp_session_established",
            "1 while BIRD's BGP protocol is up and Established, as `birdc show protocols` says.",
        );
        for p in a.bird.iter().filter(|p| p.protocol == "BGP") {
            session.set(&[("protocol", p.name.clone())], i64::from(p.established()));
        }
        let bird_up = Metric::<Gauge>::new(
            &mut r,
            "xlb_bird_up",
            "1 when BIRD answered on its control socket (xlb_bird_socket) for this scrape.",
        );
        bird_up.set(&[], i64::from(a.bird_error.is_none()));
    }
    let lease = Metric::<GaugeF>::new(
        &mut r,
        "xlb_claim_lease_seconds",
        "Seconds left before this director stops answering for a claim's VIPs unless renewed.",
    );
    for claim in &s.claims {
        if let Some(left) = claim.answer_seconds_left {
            lease.set_f64(
                &[
                    ("claim", claim.index.to_string()),
                    ("instance", claim.instance.clone().unwrap_or_default()),
                ],
                left,
            );
        }
    }

    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `/metrics` on `address`, asking the daemon for its status at every scrape. Binding
/// fails at once (a clear error before anything runs); after that, nothing a client does stops
/// the daemon.
pub async fn bind(address: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("--metrics-address {address}: cannot listen there"))
}

/// Scrapers served at once; more wait for a place (a scrape takes milliseconds).
const MAX_CLIENTS: usize = 16;
/// A client must have sent its request headers within this, and be done within
/// [`CONNECTION_LIMIT`].
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECTION_LIMIT: Duration = Duration::from_secs(30);

pub fn serve(listener: TcpListener, requests: mpsc::Sender<Incoming>) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let Ok((stream, _)) = listener.accept().await else {
                // EMFILE and the like: back off rather than spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let requests = requests.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: HttpRequest<hyper::body::Incoming>| {
                    let requests = requests.clone();
                    async move { Ok::<_, Infallible>(answer(req, requests).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_LIMIT, conn).await;
                drop(permit);
            });
        }
    });
}

async fn answer(
    req: HttpRequest<hyper::body::Incoming>,
    requests: mpsc::Sender<Incoming>,
) -> HttpResponse<Full<Bytes>> {
    let reply = |code: u16, content_type: &str, body: String| {
        HttpResponse::builder()
            .status(code)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    if req.uri().path() != "/metrics" {
        return reply(404, "text/plain", "xlb serves /metrics only\n".to_string());
    }
    let (tx, rx) = oneshot::channel();
    if requests
        .send(Incoming {
            request: Request::Status,
            reply: tx,
        })
        .await
        .is_err()
    {
        return reply(503, "text/plain", "xlb is stopping\n".into());
    }
    match tokio::time::timeout(Duration::from_secs(10), rx).await {
        Ok(Ok(Response::Status(status))) => reply(200, CONTENT_TYPE, render(&status)),
        _ => reply(503, "text/plain", "xlb did not answer\n".into()),
    }
}
