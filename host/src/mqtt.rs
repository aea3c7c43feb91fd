//! Live metrics over MQTT: the broker (an embedded rumqttd for this process's lifetime, or any
//! broker by URL), and the publisher that the single writer feeds with the same records it
//! stores. Publishing never blocks the writer: while the broker is unreachable, batches are
//! dropped and counted per run (DuckDB keeps everything regardless), and the connection is
//! retried with backoff. Topics and payloads: docs/mqtt.md.

use std::{
    collections::HashMap,
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    time::{Duration, Instant},
};

use lab_config::{Lab, MqttMode};
use rumqttc::{Client, Event, LastWill, MqttOptions, Packet, QoS};

use crate::{
    clock,
    store::{SampleRow, TokenRow},
};

/// Power batches cover about this much time per sensor.
const BATCH_SPAN: Duration = Duration::from_millis(100);
/// Token events per message.
const TOKENS_PER_MESSAGE: usize = 256;
/// Largest message labctl sends or accepts (a 100 ms batch at 10 kHz is ~60 KiB of JSON).
const MAX_PACKET: usize = 1 << 20;

/// `<prefix>/boards/<board>/power` (or `<prefix>/sensors/<sensor>/power` outside a board): one
/// batch of one sensor's samples, arrays of equal length.
#[derive(Debug, serde::Serialize)]
pub struct PowerBatchMsg<'a> {
    pub run_id: Option<&'a str>,
    pub sensor: &'a str,
    pub board: Option<&'a str>,
    pub t_us: Vec<i64>,
    pub bus_mv: Vec<f64>,
    pub current_ma: Vec<f64>,
    pub power_mw: Vec<f64>,
    /// Wall-clock time of the newest sample (ms since the epoch).
    pub newest_wall_ms: u64,
    pub simulated: bool,
}

/// `<prefix>/runs/<run_id>/tokens`: one batch of a run's token events, arrays of equal length.
#[derive(Debug, serde::Serialize)]
pub struct TokensMsg<'a> {
    pub run_id: &'a str,
    pub idx: Vec<i32>,
    pub phase: Vec<&'static str>,
    pub t_us: Vec<i64>,
    pub token_id: Vec<i32>,
    pub cycles: Vec<Option<i64>>,
}

/// `<prefix>/jobs/<job_id>/status` (retained): `rejected`, `queued` (with how many are ahead),
/// `running`, then `done`, `failed` or `aborted` (with the runs and, when not all were ok, why).
#[derive(Debug, Default, serde::Serialize)]
pub struct JobStatusMsg<'a> {
    pub job_id: &'a str,
    pub status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ahead: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<&'a [crate::records::SummaryRow]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `<prefix>/boards/<board>/state` (retained): power, the progress phase (`booting`, `ready`,
/// `warm-up`, `running`, `idle`, `off`), the bring-up state (`off`, `powered`, `flashed`,
/// `booted`, `ready`, `running`) and, where the bring-up stopped early, why.
#[derive(Debug, serde::Serialize)]
pub struct BoardStateMsg<'a> {
    pub board: &'a str,
    pub power: &'a str,
    pub phase: &'a str,
    pub state: &'a str,
    pub run_id: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub wall_ms: u64,
}

/// Undelivered messages and samples, per run (`None`: outside a run).
#[derive(Debug, Default, Clone, Copy)]

pub struct Undelivered {
    pub messages: u64,
    pub samples: u64,
}

/// Messages on subscribed topics: (topic, payload).
pub type Inbox = mpsc::Receiver<(String, Vec<u8>)>;

/// Samples of one sensor waiting to be published as one batch.
struct Pending {
    run_id: Option<Arc<str>>,
    board: Option<Arc<str>>,
    rows: Vec<SampleRow>,
    since: Instant,
}

/// A connected (or reconnecting) MQTT publisher.
pub struct Publisher {
    client: Client,
    prefix: String,
    connected: Arc<AtomicBool>,
    pending: Mutex<HashMap<Arc<str>, Pending>>,
    undelivered: Mutex<HashMap<Option<Arc<str>>, Undelivered>>,
    /// What the user was told about the broker.
    pub describe: String,
    /// Whether this connection owns the lab's online/offline status.
    announce: bool,
    /// Whether undelivered messages are worth a line at exit (not for control requests).
    reports_losses: bool,
    /// Disconnected once the network thread has ended (after it sent DISCONNECT).
    ended: Mutex<mpsc::Receiver<()>>,
    /// This process hosts the broker (it ends with the process).
    hosts_broker: bool,
}

/// How long a process that hosts the embedded broker keeps it up after its own last message:
/// the broker has taken everything once our DISCONNECT is out, but its connection threads may
/// still be writing the last summaries and the `offline` status to subscribers, and rumqttd says
/// nothing when they are done.
const EMBEDDED_DRAIN: Duration = Duration::from_millis(300);

fn url_host_port(url: &str) -> Option<(String, u16, bool)> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else {
        (false, url.strip_prefix("mqtt://")?)
    };
    let hostport = rest.split('/').next()?;
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().ok()?),
        None => (hostport.to_string(), if tls { 8883 } else { 1883 }),
    };
    Some((host, port, tls))
}

/// Starts an embedded rumqttd on `listen` for this process's lifetime: `Ok(true)`. Nothing is
/// started when a broker already listens there (it is used instead): `Ok(false)`. Errors say
/// plainly why not. With `login` (the lab's `username` and password) the broker takes only
/// clients that give them.
fn embedded_broker(listen: SocketAddr, login: Option<(&str, &str)>) -> Result<bool, String> {
    if TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_ok() {
        return Ok(false);
    }
    // Probe the port ourselves: rumqttd only logs a failed bind from its own thread.
    drop(TcpListener::bind(listen).map_err(|e| {
        format!("cannot host the embedded MQTT broker on {listen}: {e} (another program holds the port? set [mqtt] listen, or mode = \"external\")")
    })?);
    let cfg = format!(
        r#"
id = 0
[router]
id = 0
max_connections = 1000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "labctl-embedded"
listen = "{listen}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = {MAX_PACKET}
max_inflight_count = 500
dynamic_filters = true
"#
    );
    let mut config: rumqttd::Config =
        toml::from_str(&cfg).map_err(|e| format!("embedded broker config: {e}"))?;
    if let Some((user, pass)) = login {
        // Set on the parsed config, never written into text: the password is in no file or log.
        for server in config.v4.iter_mut().flat_map(|v| v.values_mut()) {
            server.connections.auth = Some([(user.to_string(), pass.to_string())].into());
        }
    }
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(|e| format!("embedded broker thread: {e}"))?;
    // Wait until it accepts connections, so the first publishes are not lost.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        if TcpStream::connect_timeout(&listen, Duration::from_millis(100)).is_ok() {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "the embedded MQTT broker did not start listening on {listen}"
    ))
}

/// Where Debian keeps the system's trusted CAs, used when `[mqtt] ca` is not given.
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// rustls client configuration for `mqtts://`: the lab's CA (or the system's), and a client
/// certificate when `cert`/`key` are given.
fn tls_config(m: &lab_config::Mqtt) -> Result<rumqttc::TlsConfiguration, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let ca =
        m.ca.clone()
            .unwrap_or_else(|| std::path::PathBuf::from(SYSTEM_CAS));
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(&ca).map_err(|e| format!("CA file {}: {e}", ca.display()))?;
    for c in certs {
        let c = c.map_err(|e| format!("CA file {}: {e}", ca.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("CA file {}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("CA file {} holds no certificate", ca.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots);
    let cfg = match (&m.cert, &m.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("client certificate {}: {e}", cert.display()))?;
            // The key's contents are never shown, only its path.
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("client key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(rumqttc::TlsConfiguration::Rustls(Arc::new(cfg)))
}

fn password(lab: &Lab) -> Result<Option<String>, String> {
    let m = lab.mqtt.as_ref().expect("checked by caller");
    if let Some(var) = &m.password_env {
        return std::env::var(var)
            .map(Some)
            .map_err(|_| format!("MQTT password: environment variable {var} is not set"));
    }
    if let Some(f) = &m.password_file {
        return std::fs::read_to_string(f)
            .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_string()))
            .map_err(|e| format!("MQTT password file {}: {e}", f.display()));
    }
    Ok(None)
}

impl Publisher {
    /// Connects as configured in the lab's `[mqtt]` (None: no MQTT section, or it cannot be
    /// used — said once on stderr; sampling and storage go on). `role` names the client
    /// (`run`, `sense`, `serve`) so that several labctl processes can publish at once.
    /// `announce`: this client owns the lab's retained `status` (and its last will): the daemon,
    /// or any verb while no daemon runs for the lab. The caller knows which; the publisher
    /// does not ask.
    pub fn connect(lab: &Lab, role: &str, announce: bool) -> Option<Arc<Publisher>> {
        let m = lab.mqtt.as_ref()?;
        match Self::try_connect(lab, m, role, announce, vec![]) {
            Ok((p, _)) => Some(p),
            Err(why) => {
                eprintln!("MQTT: {why}; going on without publishing");
                None
            }
        }
    }

    /// Like [`Publisher::connect`], also subscribing to `filters` (again after every
    /// reconnect); messages arrive on the returned receiver as (topic, payload).
    pub fn connect_with_inbox(
        lab: &Lab,
        role: &str,
        announce: bool,
        filters: Vec<String>,
    ) -> Result<(Arc<Publisher>, Inbox), String> {
        let m = lab
            .mqtt
            .as_ref()
            .ok_or("the lab file has no [mqtt] section")?;
        let (p, rx) = Self::try_connect(lab, m, role, announce, filters)?;
        Ok((p, rx))
    }

    fn try_connect(
        lab: &Lab,
        m: &lab_config::Mqtt,
        role: &str,
        announce: bool,
        filters: Vec<String>,
    ) -> Result<(Arc<Publisher>, Inbox), String> {
        let mut transport = None;
        let mut hosts_broker = false;
        // Read once: the embedded broker checks it, the client logs in with it.
        let pass = password(lab)?;
        let (host, port, describe) = match &m.mode {
            MqttMode::Embedded { listen } => {
                let login = m.username.as_deref().zip(pass.as_deref());
                hosts_broker = embedded_broker(*listen, login)?;
                let what = if hosts_broker {
                    "embedded broker"
                } else {
                    "a broker already listening there"
                };
                (
                    listen.ip().to_string(),
                    listen.port(),
                    format!("{what} at {listen}"),
                )
            }
            MqttMode::External { url, .. } => {
                let (host, port, tls) = url_host_port(url)
                    .ok_or_else(|| format!("cannot read the broker URL {url:?}"))?;
                if tls {
                    transport = Some(rumqttc::Transport::tls_with_config(tls_config(m)?));
                }
                let d = format!("broker {url}");
                (host, port, d)
            }
        };
        // A stable id per lab and role: with clean_session = false the broker keeps QoS 1
        // messages in flight across a reconnect.
        let id = match &m.client_id {
            Some(c) => format!("{c}-{role}"),
            None => format!("labctl-{}-{role}", lab.name),
        };
        let prefix = m.prefix.trim_end_matches('/').to_string();
        let mut opts = MqttOptions::new(id, host, port);
        opts.set_keep_alive(Duration::from_secs(5))
            .set_clean_session(false)
            .set_max_packet_size(MAX_PACKET, MAX_PACKET)
            .set_request_channel_capacity(4096);
        if announce {
            opts.set_last_will(LastWill::new(
                format!("{prefix}/status"),
                "offline",
                QoS::AtLeastOnce,
                true,
            ));
        }
        if let Some(t) = transport {
            opts.set_transport(t);
        }
        if let Some(user) = &m.username {
            opts.set_credentials(user.clone(), pass.clone().unwrap_or_default());
        }
        let (client, mut conn) = Client::new(opts, 4096);
        // Small batches every ~100 ms: Nagle's algorithm would hold them for the peer's delayed
        // ACK (tens of ms) and make live data late.
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(true);
        conn.eventloop.set_network_options(net);
        let connected = Arc::new(AtomicBool::new(false));
        let flag = connected.clone();
        let status_client = client.clone();
        let status_topic = format!("{prefix}/status");
        let where_ = describe.clone();
        let (inbox_tx, inbox_rx) = mpsc::channel();
        let (ended_tx, ended) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || {
                let _ended = ended_tx;
                let mut backoff = Duration::from_millis(250);
                let mut reported = false;
                let mut closing = false;
                let online = || {
                    if announce {
                        let _ = status_client.try_publish(
                            status_topic.as_str(),
                            QoS::AtLeastOnce,
                            true,
                            "online",
                        );
                    }
                };
                for ev in conn.iter() {
                    match ev {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            flag.store(true, Ordering::Relaxed);
                            backoff = Duration::from_millis(250);
                            if reported {
                                eprintln!("MQTT: connected again to {where_}; publishing resumes");
                                reported = false;
                            }
                            // A lab that takes jobs is "online" once its subscription is in
                            // place (SubAck), so a job sent on seeing "online" is not missed.
                            if filters.is_empty() {
                                online();
                            } else {
                                let _ = status_client.try_subscribe_many(filters.iter().map(
                                    |f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce),
                                ));
                            }
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => online(),
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            let _ = inbox_tx.send((p.topic.clone(), p.payload.to_vec()));
                        }
                        Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                            // Keep reading until the broker closes its side: closing ours with
                            // its acks still unread would reset the connection, and the broker
                            // would drop our last messages with it (and publish our will).
                            flag.store(false, Ordering::Relaxed);
                            closing = true;
                        }
                        Ok(_) => {}
                        Err(_) if closing => break,
                        Err(e) => {
                            flag.store(false, Ordering::Relaxed);
                            if !reported {
                                eprintln!(
                                    "MQTT: {where_} unreachable ({e}); retrying, sampling and storage go on"
                                );
                                reported = true;
                            } else {
                                tracing::debug!(error = %e, "MQTT reconnect failed");
                            }
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(2));
                        }
                    }
                }
            })
            .map_err(|e| format!("MQTT thread: {e}"))?;
        // Give the first connection a moment, so a short command's first batches are not
        // counted as undelivered just because the handshake was still in flight.
        let t = Instant::now();
        while !connected.load(Ordering::Relaxed) && t.elapsed() < Duration::from_millis(1500) {
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::info!(broker = %describe, "MQTT publisher started");
        let p = Arc::new(Publisher {
            client,
            prefix,
            connected,
            pending: Mutex::new(HashMap::new()),
            undelivered: Mutex::new(HashMap::new()),
            describe,
            announce,
            reports_losses: role != "ctl",
            ended: Mutex::new(ended),
            hosts_broker,
        });
        Ok((p, inbox_rx))
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Publishes without ever blocking; false (and counted) when it could not be handed over.
    fn send(
        &self,
        topic: String,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
        run: Option<&Arc<str>>,
        samples: u64,
    ) -> bool {
        let ok =
            self.is_connected() && self.client.try_publish(topic, qos, retain, payload).is_ok();
        if !ok {
            let mut u = self.undelivered.lock().unwrap_or_else(|p| p.into_inner());
            let e = u.entry(run.cloned()).or_default();
            e.messages += 1;
            e.samples += samples;
        }
        ok
    }

    /// Takes the samples of a stored batch; publishes a sensor's batch once it spans ~100 ms or
    /// its run changes. A sensor's batch goes out when *its* samples arrive, so its newest
    /// sample is fresh; a call without rows (the writer's idle tick) only sends batches of
    /// sensors that have gone quiet.
    pub fn samples(&self, rows: &[SampleRow]) {
        let mut ready = vec![];
        {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let mut touched: Vec<Arc<str>> = vec![];
            for r in rows {
                let e = p.entry(r.sensor.clone()).or_insert_with(|| Pending {
                    run_id: r.run_id.clone(),
                    board: r.board.clone(),
                    rows: vec![],
                    since: Instant::now(),
                });
                if e.run_id != r.run_id && !e.rows.is_empty() {
                    ready.push((
                        r.sensor.clone(),
                        std::mem::take(&mut e.rows),
                        e.run_id.clone(),
                        e.board.clone(),
                    ));
                    e.since = Instant::now();
                }
                e.run_id = r.run_id.clone();
                e.rows.push(r.clone());
                if touched.last() != Some(&r.sensor) {
                    touched.push(r.sensor.clone());
                }
            }
            let quiet = BATCH_SPAN * 3;
            for (sensor, e) in p.iter_mut() {
                let due = if touched.contains(sensor) {
                    e.since.elapsed() >= BATCH_SPAN
                } else {
                    e.since.elapsed() >= quiet
                };
                if due && !e.rows.is_empty() {
                    ready.push((
                        sensor.clone(),
                        std::mem::take(&mut e.rows),
                        e.run_id.clone(),
                        e.board.clone(),
                    ));
                    e.since = Instant::now();
                }
            }
        }
        for (sensor, rows, run, board) in ready {
            self.publish_batch(&sensor, &rows, run.as_ref(), board.as_deref());
        }
    }

    /// Publishes whatever samples are waiting (at the end of a command).
    pub fn flush(&self) {
        let ready: Vec<_> = {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            p.iter_mut()
                .filter(|(_, e)| !e.rows.is_empty())
                .map(|(s, e)| {
                    (
                        s.clone(),
                        std::mem::take(&mut e.rows),
                        e.run_id.clone(),
                        e.board.clone(),
                    )
                })
                .collect()
        };
        for (sensor, rows, run, board) in ready {
            self.publish_batch(&sensor, &rows, run.as_ref(), board.as_deref());
        }
    }

    fn publish_batch(
        &self,
        sensor: &str,
        rows: &[SampleRow],
        run: Option<&Arc<str>>,
        board: Option<&str>,
    ) {
        let Some(last) = rows.last() else { return };
        // Wall-clock time of the newest sample, from its host-clock stamp.
        let age_ms = clock::monotonic_ns().saturating_sub(last.host_ns) as f64 / 1e6;
        let wall_ms = clock::unix_ms() as f64 - age_ms;
        let payload = PowerBatchMsg {
            run_id: run.map(|r| &**r),
            sensor,
            board,
            t_us: rows.iter().map(|r| r.t_us).collect(),
            bus_mv: rows.iter().map(|r| r.bus_mv).collect(),
            current_ma: rows.iter().map(|r| r.current_ma).collect(),
            power_mw: rows.iter().map(|r| r.power_mw).collect(),
            newest_wall_ms: wall_ms.round() as u64,
            simulated: last.simulated,
        };
        let topic = match board {
            Some(b) => format!("{}/boards/{b}/power", self.prefix),
            None => format!("{}/sensors/{sensor}/power", self.prefix),
        };
        self.send(
            topic,
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&payload).unwrap_or_default(),
            run,
            rows.len() as u64,
        );
    }

    /// A finished run's token events, in batches.
    pub fn tokens(&self, rows: &[TokenRow]) {
        let Some(first) = rows.first() else { return };
        let run = first.run_id.clone();
        for chunk in rows.chunks(TOKENS_PER_MESSAGE) {
            let payload = TokensMsg {
                run_id: &run,
                idx: chunk.iter().map(|t| t.idx).collect(),
                phase: chunk.iter().map(|t| t.phase).collect(),
                t_us: chunk.iter().map(|t| t.t_us).collect(),
                token_id: chunk.iter().map(|t| t.token_id).collect(),
                cycles: chunk.iter().map(|t| t.cycles).collect(),
            };
            self.send(
                format!("{}/runs/{run}/tokens", self.prefix),
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&payload).unwrap_or_default(),
                Some(&run),
                0,
            );
        }
    }

    /// A run's `run_summary` row.
    pub fn summary(&self, run_id: &str, row: &serde_json::Value) {
        let run: Arc<str> = run_id.into();
        self.send(
            format!("{}/runs/{run_id}/summary", self.prefix),
            QoS::AtLeastOnce,
            false,
            row.to_string().into_bytes(),
            Some(&run),
            0,
        );
    }

    /// A job's status (retained, so a client that subscribes late still sees where it is).
    pub fn job_status(&self, status: &JobStatusMsg<'_>) {
        self.send(
            format!("{}/jobs/{}/status", self.prefix, status.job_id),
            QoS::AtLeastOnce,
            true,
            serde_json::to_vec(status).unwrap_or_default(),
            None,
            0,
        );
    }

    /// Publishes `payload` on `<prefix>/<suffix>` (control requests and replies).
    pub fn publish(&self, suffix: &str, retain: bool, payload: Vec<u8>) -> bool {
        self.send(
            format!("{}/{suffix}", self.prefix),
            QoS::AtLeastOnce,
            retain,
            payload,
            None,
            0,
        )
    }

    /// Retained board state: power, phase, run id.
    /// The retained `<prefix>/boards/<board>/state` message.
    pub fn board_state(
        &self,
        board: &str,
        power: bool,
        phase: &str,
        state: &str,
        run_id: Option<&str>,
        reason: Option<&str>,
    ) {
        let payload = BoardStateMsg {
            board,
            power: if power { "on" } else { "off" },
            phase,
            state,
            run_id,
            reason,
            wall_ms: clock::unix_ms(),
        };
        self.send(
            format!("{}/boards/{board}/state", self.prefix),
            QoS::AtLeastOnce,
            true,
            serde_json::to_vec(&payload).unwrap_or_default(),
            None,
            0,
        );
    }

    /// Undelivered counts so far, per run (`None`: outside runs).
    pub fn undelivered(&self) -> HashMap<Option<Arc<str>>, Undelivered> {
        self.undelivered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Takes the undelivered counts of runs (to store them with the runs).
    pub fn take_undelivered_runs(&self) -> Vec<(Arc<str>, Undelivered)> {
        let mut u = self.undelivered.lock().unwrap_or_else(|p| p.into_inner());
        let runs: Vec<Arc<str>> = u.keys().flatten().cloned().collect();
        runs.into_iter()
            .filter_map(|r| u.remove(&Some(r.clone())).map(|c| (r, c)))
            .collect()
    }

    /// Publishes what is pending, marks the lab offline (retained) and disconnects, waiting
    /// briefly for in-flight messages.
    pub fn close(&self) {
        self.flush();
        let lost: u64 = self.undelivered().values().map(|u| u.messages).sum();
        if lost > 0 && self.reports_losses {
            eprintln!("MQTT: {lost} message(s) could not be delivered (per run: runs.mqtt_undelivered_msgs)");
        }
        if self.is_connected() && self.announce {
            let _ = self.client.try_publish(
                format!("{}/status", self.prefix),
                QoS::AtLeastOnce,
                true,
                "offline",
            );
        }
        let connected = self.is_connected();
        let _ = self.client.try_disconnect();
        if connected {
            // rumqttc sends queued requests in order: once DISCONNECT went out, everything
            // before it did too. Bounded, in case the broker vanishes right now.
            let ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
            let _ = ended.recv_timeout(Duration::from_secs(5));
            if self.hosts_broker {
                std::thread::sleep(EMBEDDED_DRAIN);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(
            url_host_port("mqtt://h:1884"),
            Some(("h".into(), 1884, false))
        );
        assert_eq!(
            url_host_port("mqtts://broker.lan"),
            Some(("broker.lan".into(), 8883, true))
        );
        assert_eq!(url_host_port("http://x"), None);
    }
}
